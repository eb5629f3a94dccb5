"""Build the Bento as iris_classifier:<git commit>, labelled with the served model's provenance."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from iris_classifier.domain.schema import MODEL_NAME
from iris_classifier.model.store import ModelCard, ModelNotFoundError, ensure_model, git_commit
from iris_classifier.project.paths import BENTOML, ROOT
from iris_classifier.registry.versions import release_labels


def bento_tag(shadow_version: str | None = None, commit: str | None = None) -> str:
    """One Bento per commit; a dirty work tree gets its own `-dirty` version, rebuilt each time; one that also
    carries a shadow model (`make bento SHADOW=...`) is `<commit>-shadow-<version>`."""
    return f"{MODEL_NAME}:{commit or git_commit()}" + (f"-shadow-{shadow_version}" if shadow_version else "")


def bento_exists(tag: str) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return False
    return True


def build(*, force: bool = False, shadow: str | None = None) -> str:
    """Build (or find) this commit's Bento; with `shadow` (a stage, a version), it also carries that version's
    model, and its labels name it (`shadow_version`, `shadow_model`): served with IRIS_SHADOW and
    IRIS_SHADOW_MODEL set to them, it shadows without a registry (an image, a pod)."""
    import bentoml

    extra_env: dict[str, str] = {}
    shadow_labels: dict[str, str] = {}
    if shadow:
        from iris_classifier.registry.stage_model import stage_model

        held = stage_model(shadow)  # raises StageModelError, saying why
        extra_env = {"IRIS_SHADOW_MODEL": held.tag}
        shadow_labels = {"shadow_version": held.version, "shadow_model": held.tag}
    commit = git_commit()
    tag = bento_tag(shadow_labels.get("shadow_version"), commit)
    if tag.endswith("unknown"):
        raise SystemExit("bento: not a git checkout; the Bento is tagged with the git commit")
    ensure_model()
    card = ModelCard.read()
    labels = {
        "git_commit": commit,  # the commit the Bento is built from (the model card hashes its code)
        "model_tag": card.tag,
        "train_data_md5": card.train_data_md5,
        "held_out_accuracy": f"{card.held_out_accuracy:.4f}",
        "fast_path": card.fast_path,
        **release_labels(),  # model-registry version (GTO tag on this commit), or why there is none
        **shadow_labels,
    }
    if bento_exists(tag):
        # A commit released after its Bento was built gets the Bento again, now naming its version.
        same_release = bentoml.bentos.get(tag).info.labels.get("registry_version") == labels["registry_version"]
        if same_release and not (force or tag.endswith("-dirty")):
            print(f"bento: {tag} already built")
            return tag
        bentoml.bentos.delete(tag)
    command = [BENTOML, "build", str(ROOT), "--version", tag.split(":", 1)[1], "-o", "tag"]
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    # a shadow model is declared by the service (so packed) when IRIS_SHADOW_MODEL names it at build time
    env = {key: value for key, value in os.environ.items() if key != "IRIS_SHADOW_MODEL"} | extra_env
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    print(f"bento: built {tag} (registry: {labels['registry_ref']})")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["build", "tag"])
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--shadow", default="", help="also pack this stage's or version's model (SHADOW=)")
    args = parser.parse_args(argv)
    if args.command == "tag":
        print(bento_tag())
        return 0
    from iris_classifier.registry.stage_model import StageModelError

    try:
        build(force=args.force, shadow=args.shadow or None)
    except (ModelNotFoundError, StageModelError) as error:
        print(f"bento: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
