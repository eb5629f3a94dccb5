"""A throwaway git copy of the project, with the pipeline's outputs, on which releases and promotions are made."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, once_per_run, run
from tests.pipeline.conftest import copy_project, git_env

# DVC outputs and their cache (gitignored); reports/ is tracked by git.
OUTPUTS = ("data/raw", "data/prepared", "data/feedback", "models", ".dvc/cache")


@dataclass
class Copy:
    path: Path
    env: dict[str, str]

    def make(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # VENV: the project's venv; the copy's requirements.lock is older than its install stamp (see below).
        return run(["make", "-s", *args, f"VENV={ROOT / '.venv'}"], cwd=self.path, env=self.env, check=check)

    def git(self, *args: str) -> str:
        return run(["git", *args], cwd=self.path, env=self.env).stdout.strip()

    def tags(self) -> set[str]:
        return set(self.git("tag", "--list").split())

    def commit(self, message: str) -> str:
        """A new commit that changes no code the model depends on (the pipeline stays reproduced)."""
        readme = self.path / "README.md"
        readme.write_text(readme.read_text() + f"\n{message}\n")
        self.git("commit", "-qam", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture(scope="session")
def pipeline_outputs(pipeline_ready) -> Path:
    """The project's reproduced pipeline (dvc repro in the project, a no-op when up to date)."""
    for name in OUTPUTS:
        assert (ROOT / name).exists(), f"{name} missing after dvc repro"
    return ROOT


@pytest.fixture(scope="session")
def registry_project(tmp_path_factory, pipeline_outputs) -> Path:
    """A git copy whose HEAD records the pipeline outputs it holds (`dvc status` clean): made and checked once per
    worker, copied for each test (`registry_copy`)."""
    path = copy_project(tmp_path_factory.mktemp("registry") / "project")  # commits the work tree, dvc.lock included
    for name in OUTPUTS:
        shutil.copytree(ROOT / name, path / name, dirs_exist_ok=True)
    # make's install rule reruns when requirements.lock is newer than the venv's stamp; in a copy that would
    # point the shared venv's .pth at the copy. The copy's lock file is as old as the project's.
    stat = (ROOT / "requirements.lock").stat()
    os.utime(path / "requirements.lock", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    env = {**git_env(), "BENTOML_HOME": str(path / ".bentoml")}
    assert run(["dvc", "status", "--json"], cwd=path, env=env).stdout.strip() == "{}"
    return path


@pytest.fixture(scope="session")
def production_project(run_dir, registry_project) -> Path:
    """`registry_project` with its model released as v1.0.0, v1.0.0 promoted to production and the model imported
    into the copy's BentoML store (`make release`, `make promote`, `make model-import`): made once per run, copied
    for each test (`production_copy`)."""

    def make() -> str:
        path = run_dir / "production-project"
        shutil.rmtree(path, ignore_errors=True)  # what a failed attempt left
        shutil.copytree(registry_project, path, symlinks=True)
        copy = Copy(path, {**git_env(), "BENTOML_HOME": str(path / ".bentoml")})
        copy.make("release", "VERSION=1.0.0")
        copy.make("promote", "VERSION=1.0.0", "STAGE=production")
        copy.make("model-import")
        return str(path)

    return Path(once_per_run(run_dir, "production_project", make))


@pytest.fixture()
def registry_copy(tmp_path, registry_project) -> Copy:
    """A copy of `registry_project` of this test's own (times kept, so the lock file stays as old), with its own
    BentoML home."""
    yield from own_copy(registry_project, tmp_path / "project")


@pytest.fixture()
def production_copy(tmp_path, production_project) -> Copy:
    """A copy of `production_project` of this test's own, like `registry_copy`."""
    yield from own_copy(production_project, tmp_path / "project")


def own_copy(source: Path, path: Path):
    shutil.copytree(source, path, symlinks=True)
    copy = Copy(path, {**git_env(), "BENTOML_HOME": str(path / ".bentoml")})
    project_tags = run(["git", "tag", "--list", "iris-classifier*"]).stdout
    assert copy.git("status", "--porcelain") == ""
    yield copy
    assert run(["git", "tag", "--list", "iris-classifier*"]).stdout == project_tags, "a tag landed in the project"
    pth = next((ROOT / ".venv" / "lib").glob("python3.*/site-packages/iris_classifier_project.pth"))
    assert pth.read_text().splitlines()[0] == str(ROOT), "the copy's make must not reinstall into the project's venv"
