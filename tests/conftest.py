"""Shared fixtures: an isolated BentoML home, telemetry off, and the pipeline's outputs built for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iris_classifier.project import environment

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The venv's .pth hook (iris_classifier/project/environment.py) already set the BentoML home and telemetry off;
# this covers a pytest started by another interpreter with the project on its path.
environment.apply()
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"

# A test that needs any of these runs the pipeline, a server or a browser: it is in the slow tier, and
# `make test-fast` (-m "not slow") leaves it out. Derived from the fixtures, so the tiers cannot drift.
SLOW_FIXTURES = {"pipeline_ready", "project_copy", "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


ARTIFACTS = ROOT / "test-artifacts"


def run(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True):
    """Run a real command; on failure show its output in the assertion."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def pipeline_ready() -> None:
    """`dvc repro` in the project (a no-op when up to date), then the model imported into the store."""
    run(["dvc", "repro"])
    run([sys.executable, "-m", "iris_classifier.model.store"])


@pytest.fixture(scope="session")
def stored_model(pipeline_ready):
    from iris_classifier.model.store import ensure_model

    return ensure_model()


@pytest.fixture(scope="session")
def model_card(pipeline_ready):
    from iris_classifier.model.store import ModelCard

    return ModelCard.read()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(pipeline_ready, artifacts_dir):
    """`bentoml serve service:IrisClassifier` from the work tree, on a free loopback port."""
    from iris_classifier.harness.servers import Server

    process = Server("service:IrisClassifier", log_path=artifacts_dir / "serve-source.log").start()
    yield process
    process.stop()
