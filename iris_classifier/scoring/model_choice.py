"""Which model a scoring job uses: the one `make serve` would serve, or the one a registry stage or version names."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iris_classifier.model.files import FAST_PATH_FILES, ONNX_FILE
from iris_classifier.model.store import ensure_model, model_tag_to_serve, stored_model
from iris_classifier.project import environment
from iris_classifier.project.paths import ROOT
from iris_classifier.registry.released_model import model_at
from iris_classifier.registry.versions import (
    ARTIFACT,
    Refused,
    allowed_stages,
    normalized,
    registered_versions,
    semver_key,
    stage_holds,
)


@dataclass(frozen=True)
class ModelChoice:
    """The chosen model: its store tag (what /classify_batch answers as model_version), its files, and why."""

    tag: str
    path: Path
    registry_version: str | None
    chosen_by: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def choose(*, stage: str = "", version: str = "", root: Path = ROOT) -> ModelChoice:
    """`version` (x.y.z) or `stage` (production, staging) from the registry, else the model `make serve` serves
    (IRIS_MODEL_TAG, else the pipeline's, imported into the store if needed). Refused: a message naming the rule."""
    if stage and version:
        raise Refused("score", "one model", f"STAGE={stage} and VERSION={version} both given; name one")
    if version:
        version = normalized("score", version)
        versions = registered_versions(root)
        if version not in versions:
            known = ", ".join(sorted(versions, key=semver_key)) or "none yet"
            raise Refused("score", "a registered version", f"{ARTIFACT}@{version} does not exist (registered: {known})")
        return released(version, versions[version], f"VERSION={version[1:]}", root)
    if stage:
        stages = allowed_stages(root)
        if stage not in stages:
            raise Refused(
                "score", "stages are declared in .gto", f"unknown stage {stage!r}; one of: {', '.join(stages)}"
            )
        held = stage_holds(stage, root)
        if held is None:
            raise Refused("score", "a stage holds a version", f"{stage} holds no version yet (make promote ...)")
        return released(held[0], held[1], f"STAGE={stage} ({held[2]})", root)
    tag = model_tag_to_serve()
    if os.environ.get("IRIS_MODEL_TAG"):
        chosen_by = "IRIS_MODEL_TAG, as make serve would serve it"
        path = entry_folder(tag) or Path(stored_model(tag).path)
    else:
        chosen_by = "models/model.json, the pipeline's model, as make serve would serve it"
        path = entry_folder(tag) or Path(ensure_model().path)
    return checked(ModelChoice(tag, path, None, chosen_by))


def entry_folder(tag: str) -> Path | None:
    """The store entry's folder when the store has it (BentoML's layout: models/NAME/VERSION/model.yaml), read
    without importing BentoML (~2 s of a job's start); None sends the caller to BentoML itself."""
    name, _, version = tag.partition(":")
    folder = Path(environment.bentoml_home()) / "models" / name / version
    return folder if version and (folder / "model.yaml").exists() else None


def released(version: str, commit: str, chosen_by: str, root: Path) -> ModelChoice:
    card, entry = model_at(commit, root)
    return checked(
        ModelChoice(card.tag, Path(entry.path), version, f"{chosen_by}: {ARTIFACT}@{version}, commit {commit[:12]}")
    )


def checked(choice: ModelChoice) -> ModelChoice:
    """The job answers with the ONNX fast path (its venv has no scikit-learn): the entry must have it."""
    if not (choice.path / ONNX_FILE).exists():
        raise Refused(
            "score",
            "the model has its ONNX fast path",
            f"{choice.tag} has no {ONNX_FILE} (its card's onnx_conversion_error says why); the job scores with it",
        )
    return choice


def main(argv: list[str] | None = None) -> int:
    """`python -m iris_classifier.scoring.model_choice [--stage S | --version V] [--copy-to DIR]`: the chosen
    model as JSON; with --copy-to, its files the job loads, copied into DIR (for a job image, docs/scoring.md)."""
    import argparse
    import json
    import shutil
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--stage", default="")
    parser.add_argument("--version", default="")
    parser.add_argument("--copy-to", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        choice = choose(stage=args.stage, version=args.version)
    except Refused as refused:
        return int(refused.code or 1)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        for name in FAST_PATH_FILES:
            if (choice.path / name).exists():
                shutil.copy2(choice.path / name, args.copy_to / name)
    json.dump(choice.as_dict(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
