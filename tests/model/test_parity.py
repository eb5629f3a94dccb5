"""The ONNX fast path answers like the scikit-learn reference; a model without a converter falls back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iris_classifier.domain.schema import FEATURES
from iris_classifier.model.files import ONNX_FILE
from iris_classifier.model.pipeline import Predictor
from iris_classifier.project.paths import RAW_CSV

PROBABILITY_TOLERANCE = 0.02


def random_flowers(count: int, ranges: dict[str, list[float]], seed: int = 0) -> np.ndarray:
    low = np.array([ranges[f][0] for f in FEATURES])
    high = np.array([ranges[f][1] for f in FEATURES])
    return np.random.default_rng(seed).uniform(low, high, size=(count, len(FEATURES)))


def assert_parity(fast: Predictor, reference: Predictor, rows: np.ndarray) -> None:
    fast_p, ref_p = fast.predict_proba(rows), reference.predict_proba(rows)
    mismatches = int((fast_p.argmax(1) != ref_p.argmax(1)).sum())
    assert mismatches == 0, f"{mismatches} of {len(rows)} labels differ"
    assert np.abs(fast_p - ref_p).max() <= PROBABILITY_TOLERANCE


def test_onnx_matches_sklearn_on_the_whole_dataset_and_100k_random_flowers(stored_model):
    fast = Predictor.from_dir(Path(stored_model.path))
    reference = Predictor.from_dir(Path(stored_model.path), prefer="sklearn")
    assert (fast.backend, reference.backend) == ("onnx", "sklearn")
    assert_parity(fast, reference, pd.read_csv(RAW_CSV)[list(FEATURES)].to_numpy())
    ranges = stored_model.info.metadata["feature_ranges_cm"]
    assert_parity(fast, reference, random_flowers(100_000, ranges))
    # Flowers on the dataset's 0.1 cm grid sit exactly on tree thresholds' neighbours.
    assert_parity(fast, reference, np.round(random_flowers(100_000, ranges, seed=1), 1))


def test_one_flower_path_is_bit_identical_to_the_row_path(stored_model):
    """/classify uses predict_one (plain floats), /classify_batch predict_proba (numpy): same numbers."""
    fast = Predictor.from_dir(Path(stored_model.path))
    rows = np.concatenate(
        [
            pd.read_csv(RAW_CSV)[list(FEATURES)].to_numpy(),
            np.round(random_flowers(2_000, stored_model.info.metadata["feature_ranges_cm"], seed=2), 1),
        ]
    )
    expected = fast.predict_proba(rows).tolist()
    assert [fast.predict_one(row) for row in rows.tolist()] == expected


@pytest.fixture()
def unconvertible_model(pipeline_ready):
    import bentoml
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.semi_supervised import LabelSpreading

    from iris_classifier.model.training import train
    from iris_classifier.project.paths import TEST_CSV, TRAIN_CSV

    # skl2onnx has no converter for label spreading (the project's three estimators all convert)
    unconvertible = Pipeline([("scale", StandardScaler()), ("classify", LabelSpreading())])
    params = {"estimator": "label_spreading", "n_estimators": 0, "max_depth": None, "seed": 0}
    card = train(params=params, train_csvs=[TRAIN_CSV], test_csv=TEST_CSV, pipeline=unconvertible)
    yield bentoml.models.get(card.tag), card
    bentoml.models.delete(card.tag)


def test_a_model_without_onnx_converter_falls_back_to_sklearn(unconvertible_model):
    model, card = unconvertible_model
    assert card.fast_path == "sklearn"
    assert card.onnx_conversion_error
    assert not (Path(model.path) / ONNX_FILE).exists()
    predictor = Predictor.from_dir(Path(model.path))
    assert predictor.backend == "sklearn"
    rows = pd.read_csv(RAW_CSV)[list(FEATURES)].to_numpy()
    assert (predictor.predict_proba(rows).argmax(1) == predictor.pipeline.predict(rows)).all()
    assert predictor.predict_one(rows[0].tolist()) == predictor.predict_proba(rows[:1])[0].tolist()
