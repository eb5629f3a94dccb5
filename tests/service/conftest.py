"""Real servers for the service tests: the source service, and the built Bento."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from iris_classifier.domain.schema import FEATURES
from iris_classifier.harness.servers import Server
from tests.conftest import run


@pytest.fixture(scope="session")
def bento_tag(pipeline_ready) -> str:
    import sys

    run([sys.executable, "-m", "iris_classifier.registry.bento", "build"])
    return run([sys.executable, "-m", "iris_classifier.registry.bento", "tag"]).stdout.strip()


@pytest.fixture(scope="session")
def bento_server(bento_tag, artifacts_dir, tmp_path_factory):
    """`bentoml serve iris_classifier:<commit>`: what the image will run, its prediction log in `log_dir`."""
    log_dir = tmp_path_factory.mktemp("bento-monitor")
    process = Server(bento_tag, env={"IRIS_MONITOR_DIR": str(log_dir)}, log_path=artifacts_dir / "serve-bento.log")
    process.start()
    process.log_dir = log_dir
    yield process
    process.stop()


@pytest.fixture(scope="module")
def url(server) -> str:
    """The source service (the built Bento serves the same answers: tests/service/test_bento.py)."""
    return server.url


def classify_batch(url: str, rows: np.ndarray) -> list[dict]:
    """/classify_batch's answers for rows of cm (what the V2 and gRPC tests compare their answers with)."""
    flowers = [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]
    response = requests.post(f"{url}/classify_batch", json={"flowers": flowers}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()
