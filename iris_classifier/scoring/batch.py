"""The scoring step as a pure function: a batch of flowers in (pandas, or Arrow as Spark hands it over), the same
rows with their answers out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from iris_classifier.domain.measurements import check_measurements
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.scoring.columns import OUTPUT_COLUMNS, PROBABILITY_COLUMNS

_SPECIES = np.array(SPECIES, dtype=object)
_SPECIES_ARROW = pa.array(SPECIES, type=pa.string())
# Decimal text that Arrow's cast and Python's float() (the typed API's parser) both read, to the same float64
# (both round correctly): an optional sign, digits with an optional point, an optional exponent. Anything else
# (spaces, "1_0", "nan", "inf", other scripts' digits) is read by check_measurements, as in score_batch.
_PLAIN_DECIMAL = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"


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


def score_arrow(batch: pa.RecordBatch, predictor: Predictor, model_version: str) -> pa.RecordBatch:
    """score_batch on an Arrow batch, without a pandas copy of the user's columns: the same rows, values and
    errors (tests/scoring/test_batch.py compares the two), the input's columns passed through as they are.

    Only the measurements are read: plain decimal text is cast by Arrow, numbers taken as they are, and a row
    whose four values are read that way and keep every rule is answered at once. Every other row (text Arrow
    does not read the way float() does, a missing value, a rule broken) goes through check_measurements on its
    own cells, so its error reads as score_batch's does.
    """
    rows = batch.num_rows
    values = np.empty((rows, len(FEATURES)), dtype=np.float64)
    read = np.ones(rows, dtype=bool)
    for column, name in enumerate(FEATURES):
        values[:, column], read_here = _read_plain(batch.column(name))
        read &= read_here
    valid = read.copy()
    if read.any():  # the rules, on numbers (check_measurements' numeric path)
        valid[read] = check_measurements(pd.DataFrame(values[read], columns=list(FEATURES))).valid
    errors = np.full(rows, None, dtype=object)
    others = np.flatnonzero(~valid)
    if len(others):
        raw = batch.select(list(FEATURES)).take(pa.array(others)).to_pandas()
        checked = check_measurements(raw)
        values[others] = checked.values
        valid[others] = checked.valid
        errors[others] = np.where(checked.valid, None, checked.errors())
    probabilities = np.full((rows, len(SPECIES)), np.nan)
    species = pa.nulls(rows, type=pa.string())
    if valid.any():
        answered = predictor.predict_proba(values[valid])
        probabilities[valid] = answered
        choice = np.zeros(rows, dtype=np.int64)
        choice[valid] = answered.argmax(axis=1)
        species = pc.if_else(pa.array(valid), _SPECIES_ARROW.take(pa.array(choice)), species)
    added = [species]
    added += [pa.array(probabilities[:, i], mask=~valid) for i in range(len(SPECIES))]
    added += [pa.array([model_version], type=pa.string()).take(pa.array(np.zeros(rows, dtype=np.int64)))]
    added += [pa.array(errors, type=pa.string())]
    return pa.RecordBatch.from_arrays([*batch.columns, *added], names=[*batch.schema.names, *OUTPUT_COLUMNS])


def _read_plain(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The column as float64 and where it was read: plain decimal text cast by Arrow, or numbers (not booleans)
    as they are; NaN and False elsewhere (missing, other text, other types)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        plain = pc.fill_null(pc.match_substring_regex(column, _PLAIN_DECIMAL), False)
        numbers = pc.cast(pc.if_else(plain, column, pa.scalar(None, column.type)), pa.float64())
    elif pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        numbers = pc.cast(column, pa.float64())
        plain = pc.is_valid(numbers)
    else:
        return np.full(len(column), np.nan), np.zeros(len(column), dtype=bool)
    return numbers.to_numpy(zero_copy_only=False), plain.to_numpy(zero_copy_only=False)
