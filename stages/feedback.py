"""Stage `feedback`: the labels sent to /feedback, joined with the prediction log, as a new data version.

Reads `$IRIS_MONITOR_DIR` (default params feedback.monitor_dir, `.monitor/`), writes data/feedback/train.csv
(rows the next model learns from), data/feedback/holdout.csv (recent labels a challenger is judged on) and
reports/feedback.json (counts). The live log is not a DVC dependency (it changes every second): this stage
snapshots it when forced, as `make retrain` does (`dvc repro --force --single-item feedback`). With no log
(a fresh clone), it writes empty tables and the pipeline trains on the original split alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from iris_classifier.data.table import COLUMNS, write_csv_atomic, write_text_atomic
from iris_classifier.monitoring.feedback import JOINED_COLUMNS, Joined, join
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import FEEDBACK_HOLDOUT_CSV, FEEDBACK_JSON, FEEDBACK_TRAIN_CSV, ROOT
from iris_classifier.retraining.dataset import counts, split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    params = load_params("feedback")
    log_dir = Path(os.environ.get("IRIS_MONITOR_DIR") or ROOT / params["monitor_dir"])
    try:
        joined, log_found = join(log_dir), True
    except FileNotFoundError:
        joined, log_found = Joined(rows=pd.DataFrame(columns=JOINED_COLUMNS)), False
    train, holdout = split(joined, seed=params["seed"], holdout_percent=params["holdout_percent"])
    write_csv_atomic(train[COLUMNS], FEEDBACK_TRAIN_CSV)
    write_csv_atomic(holdout[COLUMNS], FEEDBACK_HOLDOUT_CSV)
    summary = counts(joined, train, holdout, log_found=log_found)
    write_text_atomic(json.dumps(summary, indent=2, sort_keys=True) + "\n", FEEDBACK_JSON)
    print(
        f"feedback: {summary['labels_used']} labelled flowers from {log_dir if log_found else 'no prediction log'} "
        f"({summary['train_rows']} to train on, {summary['holdout_rows']} held out; "
        f"{summary['labels_unmatched']} labels match no logged prediction, {summary['labels_conflicting']} conflicting)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
