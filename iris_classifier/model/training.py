"""Fit the scaler + classifier pipeline, check its ONNX fast path, and save both to the BentoML store.

train.py (the DVC stage) and the retraining job (a challenger on the split plus labelled feedback) both call `train`.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iris_classifier.data.table import file_md5, read_table, validate
from iris_classifier.domain.schema import FEATURES, TARGET
from iris_classifier.model.files import GRID_FILE, ONNX_FILE, PIPELINE_FILE, SCALER_FILE
from iris_classifier.model.grid import grid_json
from iris_classifier.model.pipeline import Predictor, build_pipeline, encode_species, to_onnx_bytes
from iris_classifier.model.scaler_file import scaler_json
from iris_classifier.model.store import ModelCard, save_model
from iris_classifier.project.stage_code import stage_code_md5


def features_and_labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame[list(FEATURES)].to_numpy(dtype=np.float64), encode_species(frame[TARGET])


def library_versions() -> dict[str, str]:
    """The libraries that shape the model's bytes, as locked; Python as major.minor (a patch release changes none)."""
    import bentoml
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "bentoml": bentoml.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def fast_path_files(
    pipeline: Any, pipeline_bytes: bytes, check_rows: np.ndarray
) -> tuple[dict[str, bytes], str | None]:
    """ONNX export of the pipeline, kept only if it agrees with sklearn on `check_rows`.

    A tree ensemble also gets grid.json (its votes as a lookup table, model/grid.py), kept only if the
    table gives the session's votes bit for bit on `check_rows`.
    """
    import tempfile

    try:
        onnx_bytes = to_onnx_bytes(pipeline)
    except Exception as error:  # skl2onnx raises many types for unsupported estimators
        return {}, f"{type(error).__name__}: {error}".splitlines()[0][:300]
    # The scaler's constants beside model.onnx: the service starts the fast path without scikit-learn.
    fast_path = {ONNX_FILE: onnx_bytes, SCALER_FILE: scaler_json(pipeline)}
    grid = grid_json(onnx_bytes, len(FEATURES))
    if grid is not None:
        fast_path[GRID_FILE] = grid
    with tempfile.TemporaryDirectory() as folder:
        for name, content in {**fast_path, PIPELINE_FILE: pipeline_bytes}.items():
            Path(folder, name).write_bytes(content)
        predictor = Predictor.from_dir(Path(folder), prefer="onnx-trees")  # one session: its trees, then its table
        onnx_proba = predictor.predict_proba(check_rows)
        if grid is not None:
            predictor.use_grid(json.loads(grid))
            if not np.array_equal(predictor.predict_proba(check_rows), onnx_proba):
                del fast_path[GRID_FILE]
    reference = pipeline.predict_proba(check_rows)
    if not (np.array_equal(onnx_proba.argmax(1), reference.argmax(1)) and np.abs(onnx_proba - reference).max() < 0.02):
        return {}, "ONNX output disagrees with scikit-learn on the training data"
    return fast_path, None


def read_training_rows(train_csvs: Sequence[Path]) -> pd.DataFrame:
    """The training split, then the labelled feedback (data/feedback/train.csv) when there is any, validated."""
    split, *feedback = train_csvs
    frames = [validate(read_table(split))]
    frames += [validate(read_table(path), every_species=False) for path in feedback if path.exists()]
    return pd.concat(frames, ignore_index=True)


def train(*, params: dict[str, Any], train_csvs: Sequence[Path], test_csv: Path, pipeline: Any = None) -> ModelCard:
    """Fit on the training rows (the split, then labelled feedback), convert, and save to the BentoML store.

    `pipeline`: an unfitted pipeline to fit instead of the one `params` describes (one the ONNX converter cannot
    take, to try the scikit-learn fallback). Returns the stored model's card; `held_out_accuracy` is on the
    original held-out split.
    """
    import io

    import joblib

    train_rows = read_training_rows(train_csvs)
    test_rows = validate(read_table(test_csv))
    x_train, y_train = features_and_labels(train_rows)
    x_test, y_test = features_and_labels(test_rows)

    if pipeline is None:
        pipeline = build_pipeline(
            estimator=params["estimator"],
            n_estimators=params["n_estimators"],
            max_depth=params["max_depth"],
            seed=params["seed"],
        )
    pipeline.fit(x_train, y_train)
    held_out_accuracy = float((pipeline.predict(x_test) == y_test).mean())

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    files = {PIPELINE_FILE: buffer.getvalue()}
    onnx_files, conversion_error = fast_path_files(pipeline, files[PIPELINE_FILE], np.vstack([x_train, x_test]))
    files.update(onnx_files)
    if conversion_error:
        print(f"train: no ONNX fast path ({conversion_error}); the service will use the scikit-learn pipeline")

    train_md5 = file_md5(train_csvs[0])
    card = save_model(
        model_files=files,
        card_without_tag={
            "feature_ranges_cm": {
                name: [float(train_rows[name].min()), float(train_rows[name].max())] for name in FEATURES
            },
            "feature_medians_cm": {name: float(train_rows[name].median()) for name in FEATURES},
            "params": params,
            "held_out_accuracy": held_out_accuracy,
            "code_md5": stage_code_md5("train"),
            "train_data_md5": train_md5,
            "feedback_rows": len(train_rows) - len(read_table(train_csvs[0])),
            "test_data_md5": file_md5(test_csv),
            "fast_path": "onnx" if onnx_files else "sklearn",
            "onnx_conversion_error": conversion_error or "",
            "library_versions": library_versions(),
        },
    )
    return card
