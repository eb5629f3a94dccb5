"""The model registry: release the current commit's model as a version, assign versions to stages (GTO tags).

python -m ops.registry release VERSION [--push]        iris-classifier@vX.Y.Z on HEAD (reproduced, gate passed)
python -m ops.registry promote VERSION STAGE [--push]  iris-classifier#STAGE#N on that version's commit
python -m ops.registry show                            versions and stages (gto show)
python -m ops.registry which STAGE                     the version and commit a stage holds
python -m ops.registry check-ref REF                   for CI: "EVENT VERSION STAGE" of a pushed ref
python -m ops.registry publish VERSION                 tag the version's image iris-classifier:vX.Y.Z (and push it)

Every refusal names the rule it enforces and exits non-zero. Nothing here trains, builds or pushes
unless asked: a promotion is one annotated tag on a commit that already exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from iris_classifier.params import load_params
from iris_classifier.paths import METRICS_JSON
from iris_classifier.paths import ROOT as PACKAGE_ROOT
from iris_classifier.registry import ARTIFACT, SEMVER, UNRELEASED, semver_key, version_at
from iris_classifier.store import git_commit

BIN = Path(sys.executable).parent
# The checkout this module was run from: the venv's .pth hook may have imported iris_classifier from another.
ROOT = Path(__file__).resolve().parent.parent


class Refused(SystemExit):
    """A command refused: the message names the rule; exit status 1."""

    def __init__(self, command: str, rule: str, detail: str) -> None:
        print(f"{command}: refused ({rule}): {detail}", file=sys.stderr)
        super().__init__(1)


def tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else name


def normalized(command: str, version: str) -> str:
    if not SEMVER.match(version or ""):
        raise Refused(command, "version must be semver", f"{version!r} is not MAJOR.MINOR.PATCH, e.g. VERSION=1.2.0")
    return version if version.startswith("v") else f"v{version}"


def registered_versions(root: Path = ROOT) -> dict[str, str]:
    """Registered versions -> their commit."""
    from gto.api import show
    from gto.exceptions import ArtifactNotFound

    try:
        return {entry["version"]: entry["commit_hexsha"] for entry in show(str(root), ARTIFACT, registered_only=True)}
    except ArtifactNotFound:
        return {}


def allowed_stages(root: Path = ROOT) -> list[str]:
    from gto.api import get_stages

    return list(get_stages(str(root), allowed=True))


def stage_holds(stage: str, root: Path = ROOT) -> tuple[str, str, str, float] | None:
    """(version, commit, assignment tag, its time) the stage holds now, or None.

    A stage is an environment: the LAST assignment wins (as `dvc artifacts get --stage` reads it), so a
    rollback is assigning the previous version again. GTO's `which` would pick the highest semver instead.
    """
    from gto.constants import VersionSort
    from gto.exceptions import ArtifactNotFound
    from gto.registry import GitRegistry

    with GitRegistry.from_url(str(root)) as registry:
        try:
            artifact = registry.get_state().find_artifact(ARTIFACT)
        except ArtifactNotFound:
            return None
        held = artifact.get_vstages(versions_per_stage=1, sort=VersionSort.Timestamp).get(stage)
    if not held:
        return None
    last = held[0].assignments[-1]
    return held[0].version, held[0].commit_hexsha, last.tag, last.created_at.timestamp()


def push_or_say(tags: list[str], push: bool) -> None:
    for tag in tags:
        if push:
            subprocess.run(["git", "push", "origin", tag], cwd=ROOT, check=True)
            print(f"pushed {tag} to origin")
        else:
            print(f"not pushed; to let CI act on it: git push origin '{tag}'")


def release_problems(root: Path = ROOT) -> list[tuple[str, str]]:
    """Every unmet precondition of a release, as (rule, detail)."""
    problems = []
    if git_commit(root).endswith("-dirty"):
        changed = subprocess.run(
            ["git", "diff", "--name-only", "HEAD", "--", ".", ":(exclude)dvc.lock", ":(exclude)reports"],
            cwd=root, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        problems.append(("clean working tree", f"uncommitted changes to {', '.join(changed)}; commit or stash them"))
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "dvc.lock"], cwd=root).returncode != 0:
        problems.append(
            (
                "the commit records its model",
                "dvc.lock differs from HEAD: commit the pipeline record (dvc.lock, reports/)",
            )
        )
    status = subprocess.run([tool("dvc"), "status", "--json"], cwd=root, capture_output=True, text=True)
    if status.returncode != 0 or json.loads(status.stdout or "null") != {}:
        stages = ", ".join(json.loads(status.stdout or "{}")) if status.returncode == 0 else status.stderr.strip()
        problems.append(("reproduced pipeline", f"`dvc status` is not clean ({stages}); run `make pipeline`"))
    threshold = load_params("evaluate", root / "params.yaml")["min_accuracy"]
    try:
        accuracy = json.loads((root / METRICS_JSON.relative_to(PACKAGE_ROOT)).read_text())["held_out_accuracy"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        problems.append(("accuracy gate", "reports/metrics.json has no held_out_accuracy; run `make pipeline`"))
    else:
        if accuracy < threshold:
            problems.append(
                ("accuracy gate", f"held-out accuracy {accuracy:.4f} < evaluate.min_accuracy {threshold} (params.yaml)")
            )
    return problems


def release(version: str, *, push: bool = False, root: Path = ROOT) -> str:
    from gto.api import register

    version = normalized("release", version)
    versions = registered_versions(root)
    if version in versions:
        raise Refused(
            "release",
            "a version is registered once",
            f"{ARTIFACT}@{version} already exists (commit {versions[version][:12]})",
        )
    head = git_commit(root).removesuffix("-dirty")
    existing = version_at(head, root)
    if existing:
        raise Refused("release", "one version per commit", f"commit {head[:12]} is already {ARTIFACT}@{existing}")
    problems = release_problems(root)
    for rule, detail in problems[:-1]:
        print(f"release: refused ({rule}): {detail}", file=sys.stderr)
    if problems:
        raise Refused("release", *problems[-1])
    register(str(root), ARTIFACT, "HEAD", version=version, message=f"Release {ARTIFACT} {version}", push=False)
    tag = f"{ARTIFACT}@{version}"
    print(f"release: {tag} registers commit {head[:12]} (model in dvc.lock, metrics passing the gate)")
    push_or_say([tag], push)
    return tag


def promote(version: str, stage: str, *, push: bool = False, root: Path = ROOT) -> str | None:
    from gto.api import assign

    stages = allowed_stages(root)
    if stage not in stages:
        raise Refused("promote", "stages are declared in .gto", f"unknown stage {stage!r}; one of: {', '.join(stages)}")
    version = normalized("promote", version)
    versions = registered_versions(root)
    if version not in versions:
        known = ", ".join(sorted(versions, key=semver_key)) or "none yet"
        raise Refused(
            "promote",
            "only a registered version is promoted",
            f"{ARTIFACT}@{version} does not exist (registered: {known}); `make release` it first",
        )
    held = stage_holds(stage, root)
    if held and held[0] == version:
        print(f"promote: {stage} already holds {ARTIFACT}@{version} ({held[2]}); nothing to do")
        return None
    if held and time.time() - held[3] < 1.0:
        time.sleep(1.0)  # tag times have one-second resolution: the new assignment must be strictly later
    event = assign(
        str(root),
        ARTIFACT,
        stage,
        version=version,
        message=f"Promote {ARTIFACT} {version} to {stage}",
        push=False,
        force=True,  # a version that held the stage before (a rollback) gets a new assignment tag
    )
    print(f"promote: {event.tag} assigns {stage} to {ARTIFACT}@{version} (commit {versions[version][:12]})")
    if held:
        print(f"promote: {stage} held {held[0]} before; to roll back: make promote VERSION={held[0][1:]} STAGE={stage}")
    push_or_say([event.tag], push)
    return event.tag


def show(root: Path = ROOT) -> None:
    if not registered_versions(root):
        print(f"registry: no {ARTIFACT} version yet; the first is `make release VERSION=1.0.0`")
        return
    for args in (["show"], ["show", ARTIFACT, "--sort", "timestamp"]):  # the stages, then every version
        subprocess.run([tool("gto"), *args], cwd=root, check=True)
    for stage in allowed_stages(root):
        held = stage_holds(stage, root)
        print(f"{stage}: " + (f"{ARTIFACT}@{held[0]} ({held[2]})" if held else "nothing assigned"))


def which(stage: str, root: Path = ROOT) -> tuple[str, str] | None:
    stages = allowed_stages(root)
    if stage not in stages:
        raise Refused("which", "stages are declared in .gto", f"unknown stage {stage!r}; one of: {', '.join(stages)}")
    held = stage_holds(stage, root)
    if held is None:
        print(f"{stage}: no version assigned yet (make promote VERSION=x.y.z STAGE={stage})")
        return None
    version, commit, tag, _ = held
    # DVC resolves the same stage through the artifact dvc.yaml declares: the model file at that commit.
    from dvc.api import artifacts_show

    model = artifacts_show(ARTIFACT, stage=stage, repo=str(root))
    print(f"{stage}: {ARTIFACT}@{version} commit {commit} (assigned by {tag})")
    print(f"  model: {model['path']} at {model['rev'][:12]} (dvc artifacts get . {ARTIFACT} --stage {stage})")
    print(f"  image: iris-classifier:{commit}")
    return version, commit


def check_ref(ref: str, root: Path = ROOT) -> tuple[str, str, str]:
    """What a pushed ref means to CI: (registration|assignment|stale|none, version or -, stage or -).

    `stale` is an assignment tag the stage no longer holds (an old tag pushed or rebuilt): deploy nothing.
    """
    from gto.api import check_ref as gto_check_ref
    from gto.exceptions import GTOException

    try:
        events = gto_check_ref(str(root), ref) if ref else []
    except GTOException:
        events = []
    events = [event for event in events if event.artifact == ARTIFACT]
    if not events:
        return "none", "-", "-"
    event = events[0]
    stage = getattr(event, "stage", None)
    if stage is None:
        return "registration", event.version, "-"
    held = stage_holds(stage, root)
    if held is None or held[2] != event.tag:
        return "stale", event.version, stage
    return "assignment", event.version, stage


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


def publish(version: str, *, root: Path = ROOT) -> str:
    """Tag the version's image with its version, and push it to its push_target() when there is one."""
    version = normalized("publish", version)
    versions = registered_versions(root)
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
