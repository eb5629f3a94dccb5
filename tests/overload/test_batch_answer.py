"""The /classify_batch answer built column-wise (less memory per batch in flight, issue #25) is byte for byte what
orjson writes for one Prediction dict per flower: probabilities from a real model and random ones, warnings or not."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.serving.answers import Answers, equal_rows


@pytest.mark.parametrize("count", [1, 2, 7, 10_000])
def test_the_column_wise_answer_is_the_per_flower_one(count):
    rng = np.random.default_rng(count)
    probabilities = rng.random((count, len(SPECIES)))
    probabilities[::3] = [1.0, 0.0, 0.0]  # a forest's exact votes too
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    species = [SPECIES[index] for index in probabilities.argmax(axis=1)]
    warnings = [[] if row % 5 else list(FEATURES[: 1 + row % 4]) for row in range(count)]
    answers = Answers("iris_classifier:abc123")
    built = answers.batch(species, probabilities, warnings, "42")
    assert built.body == orjson.dumps(answers.predictions(species, probabilities.tolist(), warnings))
    assert built.headers["X-Request-ID"] == "42" and built.media_type == "application/json"


def forest_probabilities(count: int, seed: int = 0) -> np.ndarray:
    """Probabilities as the predictor makes them from a 100-tree forest: float32 vote shares, renormalized."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, 101, size=(count, 2)), axis=1)
    votes = np.stack([cuts[:, 0], cuts[:, 1] - cuts[:, 0], 100 - cuts[:, 1]], axis=1).astype(np.float32) / 100
    probabilities = votes.astype(np.float64)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("count", [1, 3, 1_000, 100_000])
def test_the_answer_grouped_by_probability_row_is_the_per_flower_one(count):
    probabilities = forest_probabilities(count, seed=count)
    species = [SPECIES[index] for index in probabilities.argmax(axis=1)]
    warnings = [[] if row % 7 else list(FEATURES[row % 4 :]) for row in range(count)]
    answers = Answers("iris_classifier:abc123")
    expected = orjson.dumps(answers.predictions(species, probabilities.tolist(), warnings))
    if count == 100_000:
        first, inverse = equal_rows(probabilities)  # the grouped path, not the column-wise one
        assert len(first) <= 5151 and (probabilities[first][inverse] == probabilities).all()
    for _ in range(2):  # built, then from the pieces kept for the next request
        assert answers.batch(species, probabilities, warnings, "7").body == expected


def test_rows_that_rarely_repeat_are_not_grouped():
    assert equal_rows(np.random.default_rng(0).random((1_000, len(SPECIES)))) is None
    assert equal_rows(np.zeros((10, 2))) is None
