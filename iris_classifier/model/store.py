"""The BentoML model store: the model card, saving a trained model, exporting and restoring it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from iris_classifier.domain.schema import FEATURES, MODEL_NAME, SPECIES
from iris_classifier.project import environment
from iris_classifier.project.paths import MODEL_EXPORT, MODEL_INFO, ROOT


class ModelNotFoundError(RuntimeError):
    """No usable model; the message names the store looked in, why that store, and the command that fixes it."""


# What a stored model records as its creation time: fixed, so its model.yaml and the exported archive hash the same
# on every run (reproducible-builds' SOURCE_DATE_EPOCH idea); the time of a training run goes to reports/train-run.json.
REPRODUCIBLE_TIME = "1970-01-01T00:00:00+00:00"

# Pipeline outputs that git tracks: reproducing the pipeline rewrites them (a retrained model has a
# new tag), which says nothing about the code, so they do not make a commit "dirty".
PIPELINE_RECORDS = ("dvc.lock", "reports")


@dataclass(frozen=True)
class ModelCard:
    """What a trained model says about itself: written by `train.py`, read by the service, Bento, image and demo."""

    tag: str
    feature_ranges_cm: dict[str, list[float]]
    feature_medians_cm: dict[str, float]
    params: dict[str, Any]
    held_out_accuracy: float
    code_md5: str  # the code the train stage runs (iris_classifier/project/stage_code.py); the commit is not hashed
    train_data_md5: str
    test_data_md5: str
    fast_path: str
    library_versions: dict[str, str]
    onnx_conversion_error: str = ""
    feedback_rows: int = 0  # labelled production flowers among the training rows (make retrain)
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    species: list[str] = field(default_factory=lambda: list(SPECIES))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def store_metadata(self) -> dict[str, Any]:
        """The card as BentoML model metadata (everything but the tag; params as JSON text)."""
        metadata = self.as_dict()
        del metadata["tag"]
        metadata["params"] = json.dumps(self.params, sort_keys=True)
        return metadata

    def store_labels(self) -> dict[str, str]:
        """The few facts worth filtering on in `bentoml models list`."""
        return {
            "code_md5": self.code_md5,
            "train_data_md5": self.train_data_md5,
            "estimator": str(self.params.get("estimator", "")),
            "fast_path": self.fast_path,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """From models/model.json or a service's /model answer (extra keys there are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    @classmethod
    def from_store_entry(cls, model: Any) -> ModelCard:
        """From a BentoML store entry (`bentoml.models.get(tag)` or a service's `BentoModel`)."""
        metadata = dict(model.info.metadata)
        return cls.from_dict({**metadata, "tag": str(model.tag), "params": json.loads(metadata["params"])})

    def write(self, path: Path = MODEL_INFO) -> None:
        from iris_classifier.data.table import write_text_atomic

        write_text_atomic(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n", path)

    @classmethod
    def read(cls, path: Path = MODEL_INFO) -> ModelCard:
        """The card the pipeline recorded in models/model.json."""
        if not path.exists():
            raise model_not_found(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing")
        return cls.from_dict(json.loads(path.read_text()))


def model_not_found(problem: str, *, tag: str | None = None, export_path: Path = MODEL_EXPORT) -> ModelNotFoundError:
    """The one "no model" error: what is missing, the store looked in and why, and the command for this case."""
    home = environment.bentoml_home()
    chosen_by = environment.bentoml_home_source()
    if tag is None:
        fix = "run `make pipeline` (trains the model, or pulls it from the DVC remote)"
    elif os.environ.get("IRIS_MODEL_TAG") == tag:
        fix = (
            "IRIS_MODEL_TAG chose that model; `bentoml models list` shows what this store holds, "
            "and `unset IRIS_MODEL_TAG` serves the pipeline's model"
        )
    elif export_path.exists() and chosen_by == environment.PROJECT_DEFAULT:
        fix = "run `make model-import` (imports models/iris_classifier.bentomodel into the store)"
    elif export_path.exists():
        fix = (
            "run `make model-import` to import the pipeline's model into that store, "
            "or `unset BENTOML_HOME` to use the project's store (.bentoml/)"
        )
    else:
        fix = "run `make pipeline` (trains the model, or pulls it from the DVC remote)"
    return ModelNotFoundError(f"{problem}; BentoML store {home} (chosen by {chosen_by}): {fix}")


def git_commit(root: Path = ROOT) -> str:
    """HEAD's commit hash, with `-dirty` when tracked code or config differ from it; `unknown` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        excluded = [f":(exclude){path}" for path in PIPELINE_RECORDS]
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".", *excluded], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def content_version(card_without_tag: dict[str, Any], model_files: dict[str, bytes]) -> str:
    """A model's version from what determines it: its card (data md5s, params, code md5, metrics, library versions)
    and the bytes of its files. The same inputs on any machine give the same tag."""
    digest = hashlib.sha256(json.dumps(card_without_tag, sort_keys=True).encode())
    for name in sorted(model_files):
        digest.update(f"\0{name}\0".encode() + hashlib.sha256(model_files[name]).digest())
    return digest.hexdigest()[:16]


def save_model(*, model_files: dict[str, bytes], card_without_tag: dict[str, Any]) -> ModelCard:
    """Write the files into the store entry named by their content; an entry of that name is the same model, kept."""
    import bentoml
    from bentoml.exceptions import NotFound

    card = ModelCard(tag=f"{MODEL_NAME}:{content_version(card_without_tag, model_files)}", **card_without_tag)
    try:
        bentoml.models.get(card.tag)
        return card
    except NotFound:
        pass
    # The Python version as major.minor: a patch release changes no model byte, and the locks pin the rest.
    python = ".".join(card.library_versions.get("python", "").split(".")[:2])
    context = bentoml.models.ModelContext(framework_name="", framework_versions={}, python_version=python)
    with bentoml.models.create(
        card.tag,
        labels=card.store_labels(),
        metadata=card.store_metadata(),
        module="iris_classifier",
        context=context,
    ) as model:
        for name, content in model_files.items():
            Path(model.path_of(name)).write_bytes(content)
    fix_creation_time(Path(bentoml.models.get(card.tag).path))
    return card


def fix_creation_time(folder: Path) -> None:
    """Set a store entry's model.yaml creation_time to REPRODUCIBLE_TIME (BentoML writes the wall clock)."""
    import yaml

    model_yaml = folder / "model.yaml"
    info = yaml.safe_load(model_yaml.read_text())
    info["creation_time"] = REPRODUCIBLE_TIME
    model_yaml.write_text(yaml.safe_dump(info, sort_keys=False))


def _reproducible(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "", ""
    member.mode = 0o755 if member.isdir() else 0o644
    return member


def export_model(tag: str, destination: Path = MODEL_EXPORT) -> None:
    """The store entry as a .bentomodel archive (tar.xz, the layout `bentoml models export` writes) whose bytes
    depend only on the entry's files: sorted members, no times, owners or modes of this machine."""
    folder = Path(stored_model(tag).path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".partial-{destination.name}")
    with tarfile.open(tmp, "w:xz") as archive:
        archive.add(folder, arcname=".", recursive=False, filter=_reproducible)
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=f"./{path.relative_to(folder).as_posix()}", recursive=False, filter=_reproducible)
    tmp.replace(destination)


def model_tag_to_serve() -> str:
    """IRIS_MODEL_TAG if set, else the tag the pipeline recorded in models/model.json."""
    return os.environ.get("IRIS_MODEL_TAG") or ModelCard.read().tag


def stored_model(tag: str) -> Any:
    """The store entry for `tag`, or the one "no model" error."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise model_not_found(f"model {tag} is not in the BentoML store", tag=tag) from None


def ensure_model(info_path: Path = MODEL_INFO, export_path: Path = MODEL_EXPORT) -> Any:
    """The store entry named by models/model.json, importing the DVC-tracked export if needed."""
    import bentoml

    tag = ModelCard.read(info_path).tag
    try:
        return stored_model(tag)
    except ModelNotFoundError:
        if not export_path.exists():
            raise
    bentoml.models.import_model(str(export_path))
    return bentoml.models.get(tag)


def main() -> int:
    """`python -m iris_classifier.model.store`: make sure the pipeline's model is in the BentoML store."""
    import sys

    try:
        model = ensure_model()
    except ModelNotFoundError as error:
        print(f"model-import: {error}", file=sys.stderr)
        return 1
    print(f"model-import: {model.tag} is in the BentoML store {environment.bentoml_home()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
