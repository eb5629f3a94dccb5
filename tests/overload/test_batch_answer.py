"""The /classify_batch answer built column-wise (less memory per batch in flight, issue #25) is byte for byte what
orjson writes for one Prediction dict per flower: probabilities from a real model and random ones, warnings or not."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.serving.answers import Answers


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
