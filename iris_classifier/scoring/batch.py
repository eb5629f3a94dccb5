"""The scoring step as a pure function: a pandas batch of flowers in, the same rows with their answers out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from iris_classifier.domain.measurements import check_measurements
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor

PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"probability_{name}" for name in SPECIES)
# What the job adds after the input's own columns, in this order.
OUTPUT_COLUMNS: tuple[str, ...] = ("species", *PROBABILITY_COLUMNS, "model_version", "error")
_SPECIES = np.array(SPECIES, dtype=object)


class InputColumnsError(ValueError):
    """The input lacks a measurement column, or has a column the output would overwrite; the message names it."""


def check_input_columns(columns: list[str]) -> None:
    """Raise InputColumnsError unless every FEATURES column is present and no column is named like an output one."""
    missing = [name for name in FEATURES if name not in columns]
    if missing:
        raise InputColumnsError(
            f"input: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(needed: {', '.join(FEATURES)}; found: {', '.join(columns) or 'none'})"
        )
    clashing = [name for name in OUTPUT_COLUMNS if name in columns]
    if clashing:
        raise InputColumnsError(
            f"input: column{'s' if len(clashing) > 1 else ''} {', '.join(clashing)} would be overwritten by the "
            f"output's ({', '.join(OUTPUT_COLUMNS)}); rename {'them' if len(clashing) > 1 else 'it'} in the input"
        )


def score_batch(batch: pd.DataFrame, predictor: Predictor, model_version: str) -> pd.DataFrame:
    """Every input row, its columns unchanged, then species, a probability per species, model_version and error.

    A row whose measurements break a rule (domain/measurements.py) gets no species and no probabilities, and
    `error` names each field and rule; the others are answered by `predictor.predict_proba` on their float64
    cm, as /classify_batch answers them (the lookup table answers each row on its own, so the batch it sits in
    does not matter).
    """
    checked = check_measurements(batch)
    valid = checked.valid
    probabilities = np.full((len(batch), len(SPECIES)), np.nan)
    species = np.full(len(batch), None, dtype=object)
    if valid.any():
        answered = predictor.predict_proba(checked.values[valid])
        probabilities[valid] = answered
        species[valid] = _SPECIES[answered.argmax(axis=1)]
    errors = checked.errors()
    errors[valid] = None
    added = {"species": species}
    added.update({name: probabilities[:, i] for i, name in enumerate(PROBABILITY_COLUMNS)})
    added.update({"model_version": np.full(len(batch), model_version, dtype=object), "error": errors})
    scored = pd.concat([batch.reset_index(drop=True), pd.DataFrame(added)], axis=1)
    return scored
