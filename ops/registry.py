"""The model registry: release the current commit's model as a version, assign versions to stages (GTO tags).

python -m ops.registry release VERSION [--push]        iris-classifier@vX.Y.Z on HEAD (reproduced, gate passed)
python -m ops.registry promote VERSION STAGE [--push]  iris-classifier#STAGE#N on that version's commit
python -m ops.registry show                            versions and stages (gto show)
python -m ops.registry which STAGE                     the version and commit a stage holds
python -m ops.registry check-ref REF                   for CI: "EVENT VERSION STAGE" of a pushed ref
python -m ops.registry publish VERSION                 tag the version's image iris-classifier:vX.Y.Z (and push it)

The command line only: the registry's rules live in iris_classifier.registry.versions; publishing the
image (docker tag and push) is operations, so it stays here.

Every refusal names the rule it enforces and exits non-zero. Nothing here trains, builds or pushes
unless asked: a promotion is one annotated tag on a commit that already exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess

from iris_classifier.registry.versions import (
    ARTIFACT,
    UNRELEASED,
    Refused,
    check_ref,
    normalized,
    promote,
    registered_versions,
    release,
    show,
    which,
)


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
    """Tag the version's image with its version, and push it to its push_target() when there is one."""
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
    targets = [f"{image}:{version}"]
    pushed = push_target(version)
    if pushed:
        targets.append(pushed)
    for target in targets:
        subprocess.run(["docker", "tag", built, target], check=True)
    if pushed:
        subprocess.run(["docker", "push", pushed], check=True)
    print(
        f"publish: {built} tagged {', '.join(targets)}"
        + (f", pushed {pushed}" if pushed else " (REGISTRY and IMAGE_REPOSITORY unset: not pushed)")
    )
    return targets[-1]


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
    args = parser.parse_args(argv)
    if args.command == "release":
        release(args.version, push=args.push)
    elif args.command == "promote":
        promote(args.version, args.stage, push=args.push)
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
