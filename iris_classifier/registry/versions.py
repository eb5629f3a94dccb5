"""The model registry, all of it: versions and stages as GTO tags, and the version a build carries.

`release` registers the current commit's model as a version, `promote` assigns a version to a stage,
`which`/`show`/`check_ref` read them back (ops/registry.py is the command line over these). The version a
build carries is resolved from GTO's tags when the Bento is built and read back when served.

The registry is Git itself (GTO, Git Tag Ops): `iris-classifier@v1.0.0` registers a version on a commit,
`iris-classifier#production#3` assigns a stage. The served image must not need git or GTO, so `make bento`
resolves the version once and writes it into the Bento's labels; `/model` and the image's OCI labels read
those labels. This module is packed into the Bento: GTO and git are only imported by the build-time functions.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from iris_classifier.model.store import git_commit
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import METRICS_JSON, ROOT

BIN = Path(sys.executable).parent

ARTIFACT = "iris-classifier"  # the artifact declared in dvc.yaml's `artifacts:` and named by GTO's tags
UNRELEASED = "unreleased"
SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def semver_key(version: str) -> tuple[int, ...]:
    match = SEMVER.match(version)
    return tuple(int(part) for part in match.groups()) if match else (-1,)


def version_at(commit: str, root: Path = ROOT) -> str | None:
    """The registered (not deregistered) version whose tag points at `commit`, or None."""
    from gto.api import show
    from gto.exceptions import ArtifactNotFound

    try:
        versions = show(str(root), ARTIFACT, registered_only=True)
    except ArtifactNotFound:
        return None
    found = [entry["version"] for entry in versions if entry["commit_hexsha"] == commit]
    return max(found, key=semver_key) if found else None


def release_labels(root: Path = ROOT) -> dict[str, str]:
    """Bento labels: `registry_version` (vX.Y.Z or "unreleased") and `registry_ref` (the tag, or why there is none)."""

    def unreleased(reason: str) -> dict[str, str]:
        return {"registry_version": UNRELEASED, "registry_ref": reason}

    commit = git_commit(root)
    if commit == "unknown":
        return unreleased("not built from a git checkout")
    if commit.endswith("-dirty"):
        return unreleased(f"built from a work tree that differs from commit {commit[:12]}")
    # The release is the commit's pipeline record: a retrained model (dvc.lock changed since) is not it.
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "dvc.lock"], cwd=root).returncode != 0:
        return unreleased(f"the model differs from the one commit {commit[:12]} records (dvc.lock changed)")
    version = version_at(commit, root)
    if version is None:
        return unreleased(f"no {ARTIFACT}@v* tag on commit {commit[:12]}")
    return {"registry_version": version, "registry_ref": f"{ARTIFACT}@{version}"}


def served_release(labels: Mapping[str, str] | None) -> dict[str, str | None]:
    """What `/model` says about the registry, from the served Bento's labels (None: not served from a Bento)."""
    if labels is None:
        return {"registry_version": None, "registry": f"{UNRELEASED}: served from the source tree, not a built Bento"}
    version = labels.get("registry_version", UNRELEASED)
    if version == UNRELEASED:
        reason = labels.get("registry_ref", "built before the registry existed")
        return {"registry_version": None, "registry": f"{UNRELEASED}: {reason}"}
    return {"registry_version": version, "registry": labels.get("registry_ref", f"{ARTIFACT}@{version}")}


def image_labels(bento_labels: Mapping[str, str], commit: str) -> dict[str, str]:
    """OCI labels: the image's version is the registry version when released, else the commit (as before)."""
    version = bento_labels.get("registry_version", UNRELEASED)
    return {
        "org.opencontainers.image.version": commit if version == UNRELEASED else version,
        "ai.iris.model.registry_version": version,
    }


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
        accuracy = json.loads((root / METRICS_JSON.relative_to(ROOT)).read_text())["held_out_accuracy"]
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


def promote(
    version: str, stage: str, *, push: bool = False, root: Path = ROOT, evidence: str | None = None
) -> str | None:
    """Assign `stage` to `version`; `evidence` (why, e.g. the shadow report's figures) goes into the tag's message."""
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
        message=f"Promote {ARTIFACT} {version} to {stage}" + (f"\n\n{evidence}" if evidence else ""),
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
        for line in assignment_evidence(held[2], root) if held else []:
            print(f"  {line}")


def assignment_evidence(tag: str, root: Path = ROOT) -> list[str]:
    """What an assignment tag's message says beyond its first line: why the version holds the stage."""
    message = subprocess.run(
        ["git", "tag", "--list", "--format=%(contents)", tag], cwd=root, capture_output=True, text=True
    ).stdout
    return [line for line in message.strip().splitlines()[1:] if line.strip()]


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
    for line in assignment_evidence(tag, root):
        print(f"  {line}")
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
