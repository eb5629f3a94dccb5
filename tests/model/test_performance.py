"""Model quality, recomputed from the stored model (never read back from the metrics file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor, encode_species
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import METRICS_JSON, TEST_CSV


@pytest.mark.parametrize("backend", ["onnx", "sklearn"])
def test_model_performance_on_held_out_split(stored_model, backend):
    test = pd.read_csv(TEST_CSV)
    predictor = Predictor.from_dir(Path(stored_model.path), prefer=backend)
    predicted = predictor.predict_proba(test[list(FEATURES)].to_numpy()).argmax(axis=1)
    accuracy = float((predicted == encode_species(test["species"])).mean())
    assert accuracy >= load_params("evaluate")["min_accuracy"]
    # The evaluate stage reported the same number for the same model.
    assert json.loads(METRICS_JSON.read_text())["held_out_accuracy"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.parametrize("backend", ["onnx", "sklearn"])
@pytest.mark.parametrize("species", SPECIES)
def test_model_response_for_a_canonical_flower(stored_model, backend, species):
    predictor = Predictor.from_dir(Path(stored_model.path), prefer=backend)
    row = np.array([[EXAMPLE_FLOWERS[species][f] for f in FEATURES]])
    probabilities = predictor.predict_proba(row)[0]
    assert SPECIES[int(probabilities.argmax())] == species
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    assert probabilities.max() > 0.5
