"""The fast path starts from model.onnx + scaler.json, without scikit-learn; older models still load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, SPECIES
from iris_classifier.model.files import PIPELINE_FILE, SCALER_FILE
from iris_classifier.model.pipeline import Predictor
from iris_classifier.project.paths import ROOT

FLOWERS = np.array([list(flower.values()) for flower in EXAMPLE_FLOWERS.values()])


def test_scaler_file_holds_the_fitted_scalers_constants_exactly(stored_model):
    constants = json.loads((Path(stored_model.path) / SCALER_FILE).read_text())
    scaler = joblib.load(Path(stored_model.path) / PIPELINE_FILE).steps[0][1]
    assert constants["mean"] == scaler.mean_.tolist()  # float64 round-trips through JSON bit for bit
    assert constants["scale"] == scaler.scale_.tolist()


def test_fast_path_loads_and_answers_without_importing_scikit_learn(stored_model):
    code = (
        "import json, sys\n"
        "from iris_classifier.model.pipeline import Predictor\n"
        f"predictor = Predictor.from_dir({str(stored_model.path)!r})\n"
        f"rows = {FLOWERS.tolist()!r}\n"
        "best = [p.index(max(p)) for p in map(predictor.predict_one, rows)]\n"
        "imported = [m for m in ('sklearn', 'scipy', 'joblib') if m in sys.modules]\n"
        "print(json.dumps({'backend': predictor.backend, 'best': best, 'imported': imported}))"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    )
    assert out == {"backend": "onnx", "best": [SPECIES.index(s) for s in EXAMPLE_FLOWERS], "imported": []}


def test_a_model_stored_before_scaler_json_loads_the_same_fast_path(stored_model, tmp_path):
    older = tmp_path / "model"
    shutil.copytree(stored_model.path, older)
    (older / SCALER_FILE).unlink()
    rows = np.random.default_rng(0).uniform(0.1, 8.0, size=(2_000, 4))
    before, now = Predictor.from_dir(older), Predictor.from_dir(Path(stored_model.path))
    assert before.backend == now.backend == "onnx"
    assert np.array_equal(before.predict_proba(rows), now.predict_proba(rows))


def test_the_scikit_learn_fallback_still_loads_the_pipeline(stored_model):
    fallback = Predictor.from_dir(Path(stored_model.path), prefer="sklearn")
    assert fallback.backend == "sklearn" and fallback.pipeline is not None
    assert [SPECIES[i] for i in fallback.predict_proba(FLOWERS).argmax(1)] == list(EXAMPLE_FLOWERS)
