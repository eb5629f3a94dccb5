"""The labelled feedback as a data set: a reproducible split into rows to learn from and recent labels to judge on.

A flower's side of the split depends only on (seed, request id, index), never on how many labels came
before it: a label that judged one challenger never trains the next, however the folder grows.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from iris_classifier.data.table import COLUMNS
from iris_classifier.domain.schema import SPECIES
from iris_classifier.monitoring.feedback import Joined


def in_holdout(request_id: str, index: int, *, seed: int, holdout_percent: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{request_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < holdout_percent


def split(joined: Joined, *, seed: int, holdout_percent: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) in the project's table columns (features in cm, then the true species)."""
    rows = joined.rows
    held = [
        in_holdout(request_id, index, seed=seed, holdout_percent=holdout_percent)
        for request_id, index in zip(rows["request_id"], rows["index"], strict=True)
    ]
    mask = pd.Series(held, index=rows.index, dtype=bool)
    return rows.loc[~mask, COLUMNS].reset_index(drop=True), rows.loc[mask, COLUMNS].reset_index(drop=True)


def counts(joined: Joined, train: pd.DataFrame, holdout: pd.DataFrame, *, log_found: bool) -> dict:
    """The feedback stage's metrics (reports/feedback.json)."""
    by_species = joined.rows["species"].value_counts()
    return {
        "prediction_log": "found" if log_found else "absent",
        "labels": joined.labels,
        "labels_used": len(joined.rows),
        "labels_unmatched": joined.unmatched,
        "labels_conflicting": joined.conflicts,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "by_species": {species: int(by_species.get(species, 0)) for species in SPECIES},
        "disagreeing_with_prediction": int((joined.rows["species"] != joined.rows["predicted"]).sum()),
    }
