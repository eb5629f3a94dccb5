"""Which model a scoring job uses: the one `make serve` would serve, or the one a registry stage or version names."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iris_classifier.model.files import ONNX_FILE
from iris_classifier.model.store import ensure_model, model_tag_to_serve, stored_model
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
    if os.environ.get("IRIS_MODEL_TAG"):
        entry = stored_model(model_tag_to_serve())
        chosen_by = "IRIS_MODEL_TAG, as make serve would serve it"
    else:
        entry = ensure_model()
        chosen_by = "models/model.json, the pipeline's model, as make serve would serve it"
    return checked(ModelChoice(str(entry.tag), Path(entry.path), None, chosen_by))


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
