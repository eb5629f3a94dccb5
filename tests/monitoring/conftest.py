"""Monitoring tests: a real service with its prediction log in a folder of the test's own, and its traffic."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import requests

from iris_classifier.paths import TRAIN_CSV
from iris_classifier.schema import FEATURES
from tests.servers import Server

BAD_BODIES = [
    {"sepal_length": "wide", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4},
    {"sepal_length": -1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
]


def training_flowers(count: int, seed: int = 0, shift: dict[str, float] | None = None) -> list[dict[str, float]]:
    """Flowers resampled from the training split, optionally shifted (cm per feature)."""
    train = pd.read_csv(TRAIN_CSV)
    rows = train.sample(count, replace=True, random_state=seed)
    shift = shift or {}
    return [
        {name: round(float(row[name]) + shift.get(name, 0.0), 2) for name in FEATURES} for _, row in rows.iterrows()
    ]


def send_traffic(url: str, flowers: list[dict[str, float]], bad_every: int = 0, batch_size: int = 0) -> dict[str, int]:
    """Each flower to /classify, a bad body after every bad_every-th; then, if batch_size, the flowers in batches."""
    statuses: dict[str, int] = {}
    rng = random.Random(1)
    with requests.Session() as session:
        for number, flower in enumerate(flowers, start=1):
            status = session.post(f"{url}/classify", json=flower, timeout=10).status_code
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if bad_every and number % bad_every == 0:
                bad = session.post(f"{url}/classify", json=rng.choice(BAD_BODIES), timeout=10).status_code
                statuses[str(bad)] = statuses.get(str(bad), 0) + 1
        for start in range(0, len(flowers), batch_size or len(flowers) + 1):
            answer = session.post(
                f"{url}/classify_batch", json={"flowers": flowers[start : start + batch_size]}, timeout=30
            )
            statuses[f"batch {answer.status_code}"] = statuses.get(f"batch {answer.status_code}", 0) + 1
    return statuses


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
