"""Synthetic traffic for the monitoring tests and pictures: training flowers (optionally shifted) and bad bodies."""

from __future__ import annotations

import random

import pandas as pd
import requests

from iris_classifier.domain.schema import FEATURES
from iris_classifier.project.paths import TRAIN_CSV

BAD_BODIES = [
    {"sepal_length": "wide", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4},
    {"sepal_length": -1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
]


def training_flowers(count: int, seed: int = 0, shift: dict[str, float] | None = None) -> list[dict[str, float]]:
    """Flowers resampled from the training split, optionally shifted (cm per feature)."""
    rows = pd.read_csv(TRAIN_CSV).sample(count, replace=True, random_state=seed)
    shift = shift or {}
    return [
        {name: round(float(row[name]) + shift.get(name, 0.0), 2) for name in FEATURES} for _, row in rows.iterrows()
    ]


def send_traffic(url: str, flowers: list[dict[str, float]], bad_every: int = 0, batch_size: int = 0) -> dict[str, int]:
    """Each flower to /classify, a bad body after every bad_every-th; then, if batch_size, the flowers in batches.

    Returns how many answers had each status ("200", "400", "batch 200", ...).
    """
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
            batch = {"flowers": flowers[start : start + batch_size]}
            answer = session.post(f"{url}/classify_batch", json=batch, timeout=30)
            statuses[f"batch {answer.status_code}"] = statuses.get(f"batch {answer.status_code}", 0) + 1
    return statuses
