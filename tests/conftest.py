"""Shared fixtures: an isolated BentoML home, telemetry off, and the pipeline's outputs built for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# Before anything imports bentoml: the project's own store, no usage reporting.
os.environ.setdefault("BENTOML_HOME", str(ROOT / ".bentoml"))
for name, value in {
    "BENTOML_DO_NOT_TRACK": "True",
    "DVC_NO_ANALYTICS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
}.items():
    os.environ[name] = value
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"

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
    run([sys.executable, "-m", "iris_classifier.store"])


@pytest.fixture(scope="session")
def stored_model(pipeline_ready):
    from iris_classifier.store import ensure_model

    return ensure_model()


@pytest.fixture(scope="session")
def model_info(pipeline_ready) -> dict:
    from iris_classifier.model import read_model_info
    from iris_classifier.paths import MODEL_INFO

    return read_model_info(MODEL_INFO)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(pipeline_ready, artifacts_dir):
    """`bentoml serve service:IrisClassifier` from the work tree, on a free loopback port."""
    from tests.servers import Server

    process = Server("service:IrisClassifier", log_path=artifacts_dir / "serve-source.log").start()
    yield process
    process.stop()
