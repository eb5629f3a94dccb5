"""Build the Bento as iris_classifier:<git commit>, labelled with the served model's provenance."""

from __future__ import annotations

import argparse
import subprocess
import sys

from iris_classifier.domain.schema import MODEL_NAME
from iris_classifier.model.store import ModelCard, ModelNotFoundError, ensure_model, git_commit
from iris_classifier.project.paths import BENTOML, ROOT
from iris_classifier.registry.versions import release_labels


def bento_tag() -> str:
    """One Bento per commit; a dirty work tree gets its own `-dirty` version, rebuilt each time."""
    return f"{MODEL_NAME}:{git_commit()}"


def bento_exists(tag: str) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return False
    return True


def build(*, force: bool = False) -> str:
    import bentoml

    tag = bento_tag()
    if tag.endswith("unknown"):
        raise SystemExit("bento: not a git checkout; the Bento is tagged with the git commit")
    ensure_model()
    card = ModelCard.read()
    labels = {
        "git_commit": tag.split(":", 1)[1],  # the commit the Bento is built from (the model card hashes its code)
        "model_tag": card.tag,
        "train_data_md5": card.train_data_md5,
        "held_out_accuracy": f"{card.held_out_accuracy:.4f}",
        "fast_path": card.fast_path,
        **release_labels(),  # model-registry version (GTO tag on this commit), or why there is none
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
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"bento: built {tag} (registry: {labels['registry_ref']})")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["build", "tag"])
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "tag":
        print(bento_tag())
        return 0
    try:
        build(force=args.force)
    except ModelNotFoundError as error:
        print(f"bento: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
