"""The model registry: release the current commit's model as a version, assign versions to stages (GTO tags).

python -m ops.registry release VERSION [--push]        iris-classifier@vX.Y.Z on HEAD (reproduced, gate passed)
python -m ops.registry promote VERSION STAGE [--push]  iris-classifier#STAGE#N on that version's commit; production
       [--force --reason TEXT]                         only on a passing shadow report (iris_classifier.retraining
                                                       .promotion), or forced with a recorded reason
python -m ops.registry show                            versions and stages (gto show)
python -m ops.registry which STAGE                     the version and commit a stage holds
python -m ops.registry check-ref REF                   for CI: "EVENT VERSION STAGE" of a pushed ref
python -m ops.registry publish VERSION                 tag the version's image iris-classifier:vX.Y.Z; with REGISTRY
                                                       set, push (SIGN_KEY: signed), digest record, SBOM (ops.publish)

The command line only: the registry's rules live in iris_classifier.registry.versions; publishing the
image (skopeo push, signature, SBOM, digest record) is operations, in ops/publish.py.

Every refusal names the rule it enforces and exits non-zero. Nothing here trains, builds or pushes
unless asked: a promotion is one annotated tag on a commit that already exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from iris_classifier.registry.versions import (
    ARTIFACT,
    UNRELEASED,
    Refused,
    check_ref,
    normalized,
    registered_versions,
    release,
    show,
    which,
)
from iris_classifier.retraining.promotion import gated_promote


def push_target(version: str) -> str | None:
    """Where `make publish-image` pushes a release, if anywhere: `IMAGE_REPOSITORY:<version>` (a whole
    repository name), else `REGISTRY/iris-classifier:<version>`, named the way `make k8s-render REGISTRY=...`
    names the image the cluster pulls (ops.k8s.image_reference): one REGISTRY for Publish and Deploy."""
    if repository := os.environ.get("IMAGE_REPOSITORY"):
        return f"{repository}:{version}"
    if registry := os.environ.get("REGISTRY"):
        from ops.k8s import image_reference

        return image_reference(version, registry)
    return None


def publish(version: str) -> str:
    """Tag the version's image with its version; with a push_target(), publish it there (ops.publish.publish):
    pushed with skopeo, signed when SIGN_KEY names a key, digest read back, SBOM, then build/image.json."""
    version = normalized("publish", version)
    versions = registered_versions()
    if version not in versions:
        raise Refused("publish", "only a registered version is published", f"{ARTIFACT}@{version} does not exist")
    image = os.environ.get("IMAGE", "iris-classifier")
    built = f"{image}:{versions[version]}"
    inspected = subprocess.run(["docker", "image", "inspect", built], capture_output=True, text=True)
    if inspected.returncode != 0:
        raise Refused(
            "publish", "publish the image built from the release", f"no image {built}; run `make image` at that commit"
        )
    labels = json.loads(inspected.stdout)[0]["Config"]["Labels"] or {}
    if labels.get("ai.iris.model.registry_version", UNRELEASED) != version:
        raise Refused(
            "publish", "publish the image built from the release",
            f"{built} names registry version {labels.get('ai.iris.model.registry_version')!r}, not {version}; "
            "run `make image` at the released commit",
        )  # fmt: skip
    local = f"{image}:{version}"
    subprocess.run(["docker", "tag", built, local], check=True)
    pushed = push_target(version)
    if not pushed:
        print(f"publish: {built} tagged {local} (REGISTRY and IMAGE_REPOSITORY unset: not pushed, signed or recorded)")
        return local
    from ops import publish as publishing

    sign_key = os.environ.get("SIGN_KEY") or None
    passphrase = os.environ.get("SIGN_PASSPHRASE_FILE") or None
    record = Path(os.environ.get("IMAGE_RECORD") or publishing.RECORD)
    done = publishing.publish(
        built,
        publishing.target(pushed, what="publish"),
        record=record,
        sign_key=Path(sign_key) if sign_key else None,
        passphrase_file=Path(passphrase) if passphrase else None,
        registry=os.environ.get("IMAGE_REPOSITORY") or os.environ.get("REGISTRY"),
    )
    signed = f"signed by {done.signed_by}" if done.signed_by else "NOT signed (no SIGN_KEY): make k8s-deploy refuses it"
    print(
        f"publish: {built} tagged {local}, pushed {pushed} in {done.push_seconds:.0f} s; digest {done.digest}\n"
        f"publish: {signed}; SBOM {record.parent / done.sbom} ({done.sbom_components} packages); record {record}"
    )
    return str(done.reference)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, arguments in {
        "release": ["version"],
        "promote": ["version", "stage"],
        "show": [],
        "which": ["stage"],
        "check-ref": ["ref"],
        "publish": ["version"],
    }.items():
        sub = commands.add_parser(name)
        for argument in arguments:
            sub.add_argument(argument, nargs="?", default="")
        if name in ("release", "promote"):
            sub.add_argument("--push", action="store_true", help="push the new tag to origin")
        if name == "promote":
            sub.add_argument("--force", action="store_true", help="production without a passing shadow report")
            sub.add_argument("--reason", default="", help="why it is forced (recorded in the tag's message)")
    args = parser.parse_args(argv)
    if args.command == "release":
        release(args.version, push=args.push)
    elif args.command == "promote":
        gated_promote(args.version, args.stage, push=args.push, force=args.force, reason=args.reason)
    elif args.command == "show":
        show()
    elif args.command == "which":
        which(args.stage)
    elif args.command == "check-ref":
        print(*check_ref(args.ref))
    else:
        publish(args.version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
