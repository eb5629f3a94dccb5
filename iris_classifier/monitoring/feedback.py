"""Labels joined with the prediction log: the labelled flowers production saw, and live accuracy from them.

`make feedback-report` prints the live accuracy and confusion matrix (and writes them as JSON); the
retraining job builds its data set from the same join (iris_classifier.retraining.dataset).

A batch's flowers share one request id in the log; a flower's `index` is its position among that request's
lines, which the writer keeps in order.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from iris_classifier.data.production_log import data_files, label_files, monitor_dir, read_label_lines, read_records
from iris_classifier.domain.schema import FEATURES, SPECIES

JOINED_COLUMNS = ["request_id", "index", *FEATURES, "predicted", "species", "model_version", "received_at"]


@dataclass
class Joined:
    """The labelled flowers found in the log, and what could not be used."""

    rows: pd.DataFrame  # JOINED_COLUMNS: `species` is the true label, `predicted` what the service said
    labels: int = 0  # distinct flowers labelled
    unmatched: int = 0  # labels whose flower is not in the log (rotated away, another deployment, a typo)
    conflicts: int = 0  # flowers that got two different labels (the first one is kept)
    unmatched_examples: list[str] = field(default_factory=list)


def read_labels(log_dir: Path) -> tuple[dict[tuple[str, int], dict], int]:
    """The first label of every flower, and how many later labels disagreed with it."""
    labels: dict[tuple[str, int], dict] = {}
    conflicts = 0
    for path in label_files(log_dir):
        for record in read_label_lines(path):
            key = (str(record["request_id"]), int(record["index"]))
            first = labels.setdefault(key, record)
            conflicts += first["species"] != record["species"]
    return labels, conflicts


def logged_flowers(log_dir: Path, request_ids: set[str]) -> dict[tuple[str, int], dict]:
    """The prediction-log records of the given requests, by (request_id, index)."""
    found: dict[tuple[str, int], dict] = {}
    position: defaultdict[str, int] = defaultdict(int)
    for path in data_files(log_dir):
        for record in read_records(path):
            request_id = str(record.get("request_id"))
            if request_id in request_ids:
                found[(request_id, position[request_id])] = record
                position[request_id] += 1
    return found


def join(log_dir: Path) -> Joined:
    """Every label with its logged flower. Raises FileNotFoundError when there is no prediction log at all."""
    if not data_files(log_dir):
        raise FileNotFoundError(
            f"no prediction log under {log_dir} (IRIS_MONITOR_DIR): serve the model (make serve), "
            "classify flowers and send their labels to POST /feedback first"
        )
    labels, conflicts = read_labels(log_dir)
    flowers = logged_flowers(log_dir, {request_id for request_id, _ in labels})
    rows, unmatched = [], []
    for key, label in labels.items():
        flower = flowers.get(key)
        if flower is None:
            unmatched.append(f"{key[0]}#{key[1]}")
            continue
        rows.append(
            {
                "request_id": key[0],
                "index": key[1],
                **{name: float(flower[name]) for name in FEATURES},
                "predicted": flower["species"],
                "species": label["species"],
                "model_version": flower.get("model_version", ""),
                "received_at": float(label.get("received_at", 0.0)),
            }
        )
    frame = pd.DataFrame(rows, columns=JOINED_COLUMNS).sort_values(["received_at", "request_id", "index"])
    return Joined(
        rows=frame.reset_index(drop=True),
        labels=len(labels),
        unmatched=len(unmatched),
        conflicts=conflicts,
        unmatched_examples=unmatched[:5],
    )


def live_report(joined: Joined) -> dict:
    """Accuracy, confusion (actual -> predicted -> count), per model version and labels per hour."""
    rows = joined.rows
    confusion = {actual: dict.fromkeys(SPECIES, 0) for actual in SPECIES}
    for actual, predicted in zip(rows["species"], rows["predicted"], strict=True):
        confusion[actual][predicted] += 1
    by_version = {
        str(version): {
            "labels": len(group),
            "accuracy": round(float((group["species"] == group["predicted"]).mean()), 6),
        }
        for version, group in rows.groupby("model_version")
    }
    hours = pd.to_datetime(rows["received_at"], unit="s").dt.floor("h").dt.strftime("%Y-%m-%dT%H:00Z")
    return {
        "labels": joined.labels,
        "matched": len(rows),
        "unmatched": joined.unmatched,
        "conflicts": joined.conflicts,
        "accuracy": round(float((rows["species"] == rows["predicted"]).mean()), 6) if len(rows) else None,
        "confusion": confusion,
        "by_model_version": by_version,
        "labels_per_hour": {hour: int(count) for hour, count in hours.value_counts().sort_index().items()},
    }


def render(report: dict) -> str:
    accuracy = "n/a (no matched labels)" if report["accuracy"] is None else f"{report['accuracy']:.3f}"
    lines = [
        f"live accuracy: {accuracy} over {report['matched']} labelled flowers "
        f"({report['unmatched']} labels match no logged prediction, {report['conflicts']} conflicting)",
        "confusion (rows: true species, columns: predicted):",
        "  " + " " * 12 + "".join(f"{name:>12}" for name in SPECIES),
    ]
    lines += [
        f"  {actual:<12}" + "".join(f"{report['confusion'][actual][p]:>12}" for p in SPECIES) for actual in SPECIES
    ]
    for version, figures in report["by_model_version"].items():
        lines.append(f"  {version}: {figures['accuracy']:.3f} over {figures['labels']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Live accuracy and confusion matrix from the labels sent to /feedback")
    parser.add_argument("--log-dir", type=Path, default=None, help="default: IRIS_MONITOR_DIR or .monitor/")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    try:
        joined = join(args.log_dir or monitor_dir())
    except FileNotFoundError as error:
        print(f"feedback-report: {error}", file=sys.stderr)
        return 2
    report = live_report(joined)
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
