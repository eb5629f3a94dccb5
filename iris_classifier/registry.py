"""The model-registry version a build carries: resolved from GTO's tags when the Bento is built, read back when served.

The registry is Git itself (GTO, Git Tag Ops): `iris-classifier@v1.0.0` registers a version on a commit,
`iris-classifier#production#3` assigns a stage. The served image must not need git or GTO, so `make bento`
resolves the version once and writes it into the Bento's labels; `/model` and the image's OCI labels read
those labels. This module is packed into the Bento: GTO and git are only imported by the build-time functions.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from iris_classifier.paths import ROOT

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
    from iris_classifier.store import git_commit

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
