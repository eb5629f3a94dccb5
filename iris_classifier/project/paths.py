"""Every path the project uses, built from the repository root (never from the working directory)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / "params.yaml"
# The bentoml CLI beside this interpreter (the venv's bin/): found without the venv on PATH.
BENTOML = str(Path(sys.executable).parent / "bentoml")

DATA_DIR = ROOT / "data"
RAW_CSV = DATA_DIR / "raw" / "iris.csv"
PREPARED_DIR = DATA_DIR / "prepared"
STANDARDIZED_CSV = PREPARED_DIR / "standardized.csv"
TRAIN_CSV = PREPARED_DIR / "train.csv"
TEST_CSV = PREPARED_DIR / "test.csv"
# Labelled feedback (the `feedback` stage): flowers production saw, with the species someone confirmed.
FEEDBACK_DIR = DATA_DIR / "feedback"
FEEDBACK_TRAIN_CSV = FEEDBACK_DIR / "train.csv"  # joins the training split for the next model
FEEDBACK_HOLDOUT_CSV = FEEDBACK_DIR / "holdout.csv"  # the recent labels a challenger is judged on

MODELS_DIR = ROOT / "models"
MODEL_EXPORT = MODELS_DIR / "iris_classifier.bentomodel"
MODEL_INFO = MODELS_DIR / "model.json"

REPORTS_DIR = ROOT / "reports"
METRICS_JSON = REPORTS_DIR / "metrics.json"
CONFUSION_CSV = REPORTS_DIR / "confusion.csv"
FEEDBACK_JSON = REPORTS_DIR / "feedback.json"  # the feedback stage's counts (labels used, unmatched, conflicts)
TRAIN_RUN_JSON = REPORTS_DIR / "train-run.json"  # the last training run's machine and time (gitignored, not hashed)
RETRAIN_JSON = REPORTS_DIR / "retrain.json"  # make retrain's decision (gitignored: Jenkins archives it)
RETRAIN_HTML = REPORTS_DIR / "retrain.html"
