"""A throwaway copy of the project (its git-visible files only) with its own BentoML home."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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
    """This environment as a fresh clone's shell has it, with a git identity: without the IRIS_MONITOR_DIR of the
    session's servers (tests/conftest.py), so a copy's pipeline reads its own .monitor/ as a clone's would."""
    return {
        **{name: value for name, value in os.environ.items() if name != "IRIS_MONITOR_DIR"},
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@127.0.0.1",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@127.0.0.1",
    }


@pytest.fixture()
def project_copy(tmp_path) -> tuple[Path, dict[str, str]]:
    """(path of the copy, environment whose BentoML home lies inside it)."""
    copy = copy_project(tmp_path / "project")
    env = {**git_env(), "BENTOML_HOME": str(copy / ".bentoml")}
    return copy, env


def stages(root: Path = ROOT) -> list[str]:
    """The pipeline's stages, in dvc.yaml's order."""
    return list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])


def assert_rebuilt(output: str, root: Path) -> None:
    """A from-scratch `make pipeline`: every stage with outputs to make ran; evaluate, whose outputs git tracks
    (the metrics), found its inputs reproduced byte for byte and had nothing to do."""
    for stage in stages(root):
        if stage == "evaluate":
            assert "Stage 'evaluate' didn't change, skipping" in output, output
        else:
            assert f"Running stage '{stage}'" in output, output


def stage_outputs(root: Path = ROOT) -> list[str]:
    """Every output dvc.yaml declares (metrics that git tracks are not outputs)."""
    return [
        next(iter(out)) if isinstance(out, dict) else out
        for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
        for out in stage.get("outs", [])
    ]


@pytest.fixture(scope="session")
def rebuilt_project(tmp_path_factory) -> tuple[Path, str]:
    """A fresh copy without outputs or a DVC remote on which `make pipeline` rebuilt everything from the bundled
    dataset: (its path, what make printed). The one rebuild from scratch of a run's worker (about a minute of CPU);
    each test gets a copy of it (`rebuilt_copy`)."""
    copy = copy_project(tmp_path_factory.mktemp("rebuilt") / "project")
    present = [name for name in [*stage_outputs(copy), ".dvc-remote"] if (copy / name).exists()]
    assert not present, f"a fresh copy already holds {present}"
    env = {**git_env(), "BENTOML_HOME": str(copy / ".bentoml")}
    first = run(["make", "-s", "pipeline", f"VENV={ROOT / '.venv'}"], cwd=copy, env=env)
    return copy, first.stdout


@pytest.fixture()
def rebuilt_copy(rebuilt_project, tmp_path) -> tuple[Path, dict[str, str], str]:
    """(a copy of `rebuilt_project` of this test's own, environment with its own BentoML home, make's output)."""
    source, first_output = rebuilt_project
    copy = tmp_path / "project"
    shutil.copytree(source, copy, symlinks=True)
    return copy, {**git_env(), "BENTOML_HOME": str(copy / ".bentoml")}, first_output
