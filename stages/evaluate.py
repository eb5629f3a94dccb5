"""Stage `evaluate`: held-out metrics of the stored model, k-fold CV accuracy, and the accuracy gate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, cross_val_score

from iris_classifier.data.table import read_table, validate, write_csv_atomic, write_text_atomic
from iris_classifier.domain.schema import FEATURES, SPECIES, TARGET
from iris_classifier.model.pipeline import Predictor, build_pipeline, encode_species
from iris_classifier.model.store import ModelNotFoundError, ensure_model
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import CONFUSION_CSV, METRICS_JSON, TEST_CSV, TRAIN_CSV


def evaluate(
    *, model_dir: Path, train_params: dict[str, Any], cv_folds: int, seed: int, train_csv: Path, test_csv: Path
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics dict and the (actual, predicted) table behind the confusion matrix."""
    test_rows = validate(read_table(test_csv))
    predictor = Predictor.from_dir(model_dir)
    y_true = encode_species(test_rows[TARGET])
    y_pred = predictor.predict_proba(test_rows[list(FEATURES)].to_numpy()).argmax(axis=1)
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(SPECIES)), zero_division=0
    )
    train_rows = validate(read_table(train_csv))
    cv_scores = cross_val_score(
        build_pipeline(
            estimator=train_params["estimator"],
            n_estimators=train_params["n_estimators"],
            max_depth=train_params["max_depth"],
            seed=train_params["seed"],
        ),
        train_rows[list(FEATURES)].to_numpy(),
        encode_species(train_rows[TARGET]),
        cv=StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed),
    )
    metrics = {
        "held_out_accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "held_out_macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 6),
        "per_class": {
            species: {"precision": round(float(p), 6), "recall": round(float(r), 6)}
            for species, p, r in zip(SPECIES, precision, recall, strict=True)
        },
        "cv_accuracy_mean": round(float(np.mean(cv_scores)), 6),
        "cv_accuracy_std": round(float(np.std(cv_scores)), 6),
        "cv_folds": cv_folds,
        "test_rows": len(test_rows),
        "backend": predictor.backend,
    }
    confusion = pd.DataFrame({"actual": [SPECIES[i] for i in y_true], "predicted": [SPECIES[i] for i in y_pred]})
    return metrics, confusion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    params = load_params()
    try:
        model = ensure_model()
        metrics, confusion = evaluate(
            model_dir=Path(model.path),
            train_params=params["train"],
            cv_folds=params["evaluate"]["cv_folds"],
            seed=params["evaluate"]["seed"],
            train_csv=TRAIN_CSV,
            test_csv=TEST_CSV,
        )
    except (ModelNotFoundError, OSError, ValueError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    write_text_atomic(json.dumps(metrics, indent=2, sort_keys=True) + "\n", METRICS_JSON)
    write_csv_atomic(confusion, CONFUSION_CSV)
    print(
        f"evaluate: {model.tag} held-out accuracy {metrics['held_out_accuracy']:.3f}, "
        f"macro-F1 {metrics['held_out_macro_f1']:.3f}, CV {metrics['cv_accuracy_mean']:.3f}"
    )
    threshold = params["evaluate"]["min_accuracy"]
    if metrics["held_out_accuracy"] < threshold:
        print(
            f"evaluate: held-out accuracy {metrics['held_out_accuracy']:.3f} is below "
            f"evaluate.min_accuracy {threshold}: the model is not good enough to ship",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
