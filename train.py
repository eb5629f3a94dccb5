"""Stage `train`: fit the scaler + classifier pipeline on the training split (in cm), plus any labelled
feedback (data/feedback/train.csv, from the `feedback` stage), and store it in BentoML."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime

from iris_classifier.model.store import ModelCard, export_model, git_commit
from iris_classifier.model.training import train
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import (
    FEEDBACK_TRAIN_CSV,
    MODEL_EXPORT,
    MODEL_INFO,
    TEST_CSV,
    TRAIN_CSV,
    TRAIN_RUN_JSON,
)


def write_run_record(card: ModelCard) -> None:
    """Where and when this run trained the model: machine provenance, kept out of every hashed output."""
    record = {
        "tag": card.tag,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    TRAIN_RUN_JSON.parent.mkdir(parents=True, exist_ok=True)
    TRAIN_RUN_JSON.write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-export", action="store_true", help="skip writing models/ (store entry only)")
    args = parser.parse_args(argv)
    try:
        params = load_params("train")
        card = train(params=params, train_csvs=[TRAIN_CSV, FEEDBACK_TRAIN_CSV], test_csv=TEST_CSV)
    except (OSError, ValueError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    if not args.no_export:
        export_model(card.tag, MODEL_EXPORT)
        card.write(MODEL_INFO)
    write_run_record(card)
    print(f"train: saved {card.tag} (held-out accuracy {card.held_out_accuracy:.3f}, fast path {card.fast_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
