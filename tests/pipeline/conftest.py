"""A throwaway copy of the project (its git-visible files only) with its own BentoML home."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run


def copy_project(destination: Path) -> Path:
    """Copy what git would clone plus uncommitted edits; never the venv, caches or outputs."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    destination.mkdir(parents=True)
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy for a test"]):
        run(command, cwd=destination, env=git_env())
    return destination


def git_env() -> dict[str, str]:
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@127.0.0.1",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@127.0.0.1",
    }


@pytest.fixture()
def project_copy(tmp_path) -> tuple[Path, dict[str, str]]:
    """(path of the copy, environment whose BentoML home lies inside it)."""
    copy = copy_project(tmp_path / "project")
    env = {**os.environ, "BENTOML_HOME": str(copy / ".bentoml")}
    return copy, env
