"""Monitoring tests: a real service with its prediction log in a folder of the test's own."""

from __future__ import annotations

import pytest

from iris_classifier.harness.servers import Server


@pytest.fixture(scope="module")
def logged_server(pipeline_ready, artifacts_dir, tmp_path_factory):
    """`bentoml serve service:IrisClassifier` writing its prediction log under a temporary IRIS_MONITOR_DIR."""
    log_dir = tmp_path_factory.mktemp("monitor")
    server = Server(
        "service:IrisClassifier",
        env={"IRIS_MONITOR_DIR": str(log_dir), "IRIS_PREDICTION_LOG": "1"},
        log_path=artifacts_dir / "serve-monitoring.log",
    ).start(wait_ready=180)
    server.log_dir = log_dir
    yield server
    server.stop()
