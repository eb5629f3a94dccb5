"""What production writes under IRIS_MONITOR_DIR, as files: the prediction log and the labels sent to /feedback.

The serving layer writes them (iris_classifier.serving.prediction_log and .feedback); the drift check, the
live-accuracy report and the retraining job read them. Only the layout lives here, so readers need not
import the server.

    $IRIS_MONITOR_DIR/iris_predictions/data/data.<host>.<worker>.log[.N]   one JSON line per classified flower
    $IRIS_MONITOR_DIR/feedback/labels.<host>.<pid>.jsonl             one JSON line per accepted label
    $IRIS_MONITOR_DIR/iris_shadow/data/data.<host>.<worker>.log[.N]  one JSON line per flower a shadow model saw
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from iris_classifier.project.paths import ROOT

LOG_DIR_ENV = "IRIS_MONITOR_DIR"
DEFAULT_LOG_DIR = ROOT / ".monitor"  # gitignored
MONITOR_NAME = "iris_predictions"
SHADOW_NAME = "iris_shadow"  # the shadow log (iris_classifier.serving.shadow): same layout and rotation
FEEDBACK_DIRNAME = "feedback"
LABEL_FILE_GLOB = "labels.*.jsonl"
LABEL_KEYS = frozenset({"request_id", "index", "species"})


def monitor_dir() -> Path:
    """Where the prediction log, the labels (and the drift check's last verdict) live."""
    return Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)


def data_files(log_dir: Path, name: str = MONITOR_NAME) -> list[Path]:
    """The prediction log's data files, current and rotated, oldest first."""
    folder = log_dir / name / "data"
    return sorted(folder.glob("data.*.log*"), key=lambda path: (path.stat().st_mtime, path.name))


def label_files(log_dir: Path) -> list[Path]:
    """Every serving process's label file, oldest first."""
    folder = log_dir / FEEDBACK_DIRNAME
    return sorted(folder.glob(LABEL_FILE_GLOB), key=lambda path: (path.stat().st_mtime, path.name))


def read_records(path: Path, keys: frozenset[str] = frozenset()) -> Iterator[dict]:
    """The JSON records of one of these files, in order, those that hold `keys`; a torn line (a crash mid-write)
    is skipped."""
    with path.open("rb") as handle:
        for line in handle:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and keys <= record.keys():
                yield record


def read_label_lines(path: Path) -> Iterator[dict]:
    """The labels of one file; a torn last line (a crash mid-write, before the fsync) is skipped."""
    return read_records(path, LABEL_KEYS)
