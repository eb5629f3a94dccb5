"""The fitted scaler's constants as a small JSON next to model.onnx, so the ONNX fast path starts
without unpickling the scikit-learn pipeline (and so without importing scikit-learn and SciPy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from iris_classifier.model.files import PIPELINE_FILE, SCALER_FILE


def scaler_json(pipeline: Any) -> bytes:
    """The first step's (StandardScaler's) mean and scale, exactly: JSON floats round-trip float64."""
    scaler = pipeline.steps[0][1]
    return json.dumps({"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}).encode()


def read_scaler(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) from scaler.json; from the pickled pipeline for a model stored before that file."""
    path = Path(folder) / SCALER_FILE
    if path.exists():
        constants = json.loads(path.read_text())
        return np.asarray(constants["mean"], dtype=np.float64), np.asarray(constants["scale"], dtype=np.float64)
    import joblib

    scaler = joblib.load(Path(folder) / PIPELINE_FILE).steps[0][1]
    return np.asarray(scaler.mean_, dtype=np.float64), np.asarray(scaler.scale_, dtype=np.float64)
