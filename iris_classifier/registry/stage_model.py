"""The stored model a registry stage (`staging`) or version (`v1.1.0`, `1.1.0`) names, imported from DVC if missing.

The registry (GTO tags) says which commit a stage or version is; that commit's `models/model.json` (DVC-tracked)
names the model's BentoML tag, and its `models/iris_classifier.bentomodel` is imported into the store when the
store lacks it. Used by the retraining job (the champion: `production`) and by `make serve SHADOW=...` (the
shadow), which resolves the name here, where git and GTO are, and hands the server the tag
(`python -m iris_classifier.registry.stage_model serve-env SPEC` prints the environment for it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from iris_classifier.model.store import ModelCard
from iris_classifier.project.paths import ROOT
from iris_classifier.registry.versions import (
    ARTIFACT,
    SEMVER,
    allowed_stages,
    registered_versions,
    semver_key,
    stage_holds,
)

MODEL_FILE = "models/iris_classifier.bentomodel"  # the registry's artifact path (dvc.yaml `artifacts:`)
CARD_FILE = "models/model.json"


class StageModelError(RuntimeError):
    """The name resolves to no stored model; the message says why and what to run."""


@dataclass(frozen=True)
class StageModel:
    version: str  # vX.Y.Z
    commit: str
    tag: str  # the BentoML model tag
    stage: str | None = None  # the stage it was named by, if any


def resolve(name: str, root: Path = ROOT) -> tuple[str, str, str | None]:
    """(version, commit, stage) for a stage or a version; raises StageModelError."""
    stages = allowed_stages(root)
    if name in stages:
        held = stage_holds(name, root)
        if held is None:
            raise StageModelError(f"stage {name!r} holds no version yet (make promote VERSION=x.y.z STAGE={name})")
        return held[0], held[1], name
    if not SEMVER.match(name):
        raise StageModelError(f"{name!r} is neither a stage ({', '.join(stages)}) nor a version (x.y.z or vx.y.z)")
    version = name if name.startswith("v") else f"v{name}"
    versions = registered_versions(root)
    if version not in versions:
        known = ", ".join(sorted(versions, key=semver_key)) or "none yet"
        raise StageModelError(f"{ARTIFACT}@{version} is not a registered version (registered: {known})")
    return version, versions[version], None


def stage_model(name: str, root: Path = ROOT) -> StageModel:
    """The model `name` holds, in the BentoML store (imported from the DVC cache or remote at its commit)."""
    import bentoml
    import dvc.api

    version, commit, stage = resolve(name, root)
    try:
        card = ModelCard.from_dict(json.loads(dvc.api.read(CARD_FILE, repo=str(root), rev=commit)))
    except Exception as error:  # DVC raises many kinds: missing cache, no remote, path not tracked
        raise StageModelError(
            f"{ARTIFACT}@{version}: cannot read {CARD_FILE} at commit {commit[:12]} ({type(error).__name__}: "
            f"{error}); `make pull` fetches the DVC outputs"
        ) from None
    try:
        bentoml.models.get(card.tag)
    except bentoml.exceptions.NotFound:
        try:
            with tempfile.TemporaryDirectory() as folder:
                exported = Path(folder) / "model.bentomodel"
                exported.write_bytes(dvc.api.read(MODEL_FILE, repo=str(root), rev=commit, mode="rb"))
                bentoml.models.import_model(str(exported))
        except Exception as error:
            raise StageModelError(
                f"{ARTIFACT}@{version}: model {card.tag} is not in the BentoML store and {MODEL_FILE} at commit "
                f"{commit[:12]} cannot be imported ({type(error).__name__}: {error}); `make pull` fetches it"
            ) from None
    return StageModel(version=version, commit=commit, tag=card.tag, stage=stage)


def serve_env(name: str, root: Path = ROOT) -> dict[str, str]:
    """The environment that makes a server shadow `name` (iris_classifier.serving.shadow reads it): the version and
    the model's tag, or, when `name` resolves to nothing, the reason (the server serves and /model says why)."""
    if not name:
        return {}
    try:
        model = stage_model(name, root)
    except StageModelError as error:
        return {"IRIS_SHADOW": name, "IRIS_SHADOW_ERROR": str(error)}
    return {"IRIS_SHADOW": model.version, "IRIS_SHADOW_MODEL": model.tag}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve-env"])
    parser.add_argument("name", nargs="?", default="")
    args = parser.parse_args(argv)
    env = serve_env(args.name)
    if "IRIS_SHADOW_ERROR" in env:
        print(f"shadow: off: {env['IRIS_SHADOW_ERROR']}", file=sys.stderr)
    elif env:
        print(f"shadow: {args.name} is {ARTIFACT}@{env['IRIS_SHADOW']} ({env['IRIS_SHADOW_MODEL']})", file=sys.stderr)
    print(" ".join(f"{key}={shlex.quote(value)}" for key, value in env.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
