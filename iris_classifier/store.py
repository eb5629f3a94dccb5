"""The BentoML model store: save a trained model with its provenance, export it, restore it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from iris_classifier.paths import MODEL_EXPORT, MODEL_INFO, ROOT
from iris_classifier.schema import MODEL_NAME


class ModelNotFoundError(RuntimeError):
    """No usable model in the store; the message says which make target provides one."""


# Pipeline outputs that git tracks: reproducing the pipeline rewrites them (a retrained model has a
# new tag), which says nothing about the code, so they do not make a commit "dirty".
PIPELINE_RECORDS = ("dvc.lock", "reports")


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


def save_model(*, model_files: dict[str, bytes], labels: dict[str, str], metadata: dict[str, Any]) -> str:
    """Write the files into a new store entry and return its tag (`iris_classifier:<version>`)."""
    import bentoml

    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata, module="iris_classifier") as model:
        for name, content in model_files.items():
            Path(model.path_of(name)).write_bytes(content)
    return str(model.tag)


def export_model(tag: str, destination: Path = MODEL_EXPORT) -> None:
    import bentoml

    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".partial-{destination.name}")  # bentoml keeps the .bentomodel suffix
    tmp.unlink(missing_ok=True)
    bentoml.models.export_model(tag, str(tmp))
    tmp.replace(destination)


def ensure_model(info_path: Path = MODEL_INFO, export_path: Path = MODEL_EXPORT) -> Any:
    """The store entry named by models/model.json, importing the DVC-tracked export if needed."""
    import bentoml
    from bentoml.exceptions import NotFound

    from iris_classifier.model import read_model_info

    try:
        tag = read_model_info(info_path)["tag"]
    except FileNotFoundError as error:
        raise ModelNotFoundError(
            f"{info_path.name} is missing: run `make pipeline` (trains, or pulls the model from the DVC remote)"
        ) from error
    try:
        return bentoml.models.get(tag)
    except NotFound:
        pass
    if not export_path.exists():
        raise ModelNotFoundError(
            f"model {tag} is not in the BentoML store and {export_path.name} is missing: "
            "run `make pipeline` (or `make model-import` after `dvc pull`)"
        )
    bentoml.models.import_model(str(export_path))
    return bentoml.models.get(tag)


def main() -> int:
    """`python -m iris_classifier.store`: make sure the pipeline's model is in the local store."""
    import sys

    try:
        model = ensure_model()
    except ModelNotFoundError as error:
        print(f"model-import: {error}", file=sys.stderr)
        return 1
    print(f"model-import: {model.tag} is in the BentoML store")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
