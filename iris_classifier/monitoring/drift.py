"""Input drift: the last N logged flowers against the training split, with Evidently's DataDriftPreset.

`python -m iris_classifier.monitoring.drift` (`make drift`) writes reports/drift.html and reports/drift.json, and the
same verdict to `<log dir>/drift.json`, where the service reads it for its drift gauges. Exit codes:
0 no drift, 1 drift, 2 too few flowers logged. Evidently is imported here only (never by the service).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from iris_classifier.data.production_log import data_files, monitor_dir
from iris_classifier.domain.schema import FEATURES
from iris_classifier.project.paths import REPORTS_DIR, TRAIN_CSV
from iris_classifier.serving.status_metrics import DRIFT_STATUS_FILE

DEFAULT_WINDOW = 500
DEFAULT_MIN_FLOWERS = 50
DRIFT_HTML = REPORTS_DIR / "drift.html"
DRIFT_JSON = REPORTS_DIR / "drift.json"
# One drifted feature of the four is drift: a shift in petal length alone changes the species predicted.
DRIFT_SHARE = 1 / len(FEATURES)
EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_TOO_FEW = 0, 1, 2


@dataclass
class LoggedFlowers:
    """The window of flowers read back from the prediction log."""

    flowers: pd.DataFrame  # FEATURES columns, oldest first
    skipped_lines: int  # empty, corrupt or incomplete lines
    read_lines: int


def parse_flower(line: bytes) -> list[float] | None:
    """The four measurements of one log line, or None when the line is empty, corrupt or incomplete."""
    try:
        record = json.loads(line)
        values = [float(record[name]) for name in FEATURES]
    except (ValueError, KeyError, TypeError):
        return None
    return values if all(math.isfinite(value) and value > 0 for value in values) else None


def read_logged_flowers(log_dir: Path, window: int) -> LoggedFlowers:
    """The last `window` good flowers across the log's files (rotated ones included), oldest first."""
    last: deque[list[float]] = deque(maxlen=window)
    skipped = read = 0
    for path in data_files(log_dir):
        with path.open("rb") as lines:
            for line in lines:
                read += 1
                flower = parse_flower(line)
                if flower is None:
                    skipped += 1
                else:
                    last.append(flower)
    return LoggedFlowers(pd.DataFrame(list(last), columns=list(FEATURES)), skipped, read)


def compare(current: pd.DataFrame, reference: pd.DataFrame) -> tuple[dict[str, Any], Any]:
    """Evidently's drift verdict per feature; returns (summary, the Evidently snapshot for HTML)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently import __version__ as evidently_version
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(FEATURES))
    report = Report([DataDriftPreset(drift_share=DRIFT_SHARE)], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[list(FEATURES)], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[list(FEATURES)], data_definition=definition),
    )
    result = snapshot.dict()
    failed = {test["metric_config"]["metric_id"] for test in result["tests"] if test["status"] == "FAIL"}
    features: dict[str, dict[str, Any]] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            features[config["column"]] = {
                "score": float(metric["value"]),
                "method": config["method"],
                "threshold": config["threshold"],
                "drifted": metric["id"] in failed,
            }
    drifted = [name for name in FEATURES if features[name]["drifted"]]
    methods = sorted({feature["method"] for feature in features.values()})
    summary = {
        "drift_detected": bool(drifted),
        "drifted_features": drifted,
        "drift_share": len(drifted) / len(FEATURES),
        "drift_share_threshold": DRIFT_SHARE,
        "method": f"Evidently {evidently_version} DataDriftPreset: " + ", ".join(methods),
        "features": features,
    }
    return summary, snapshot


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: the service may read the file while it is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n")
    partial.replace(path)


def check(
    *,
    log_dir: Path,
    reference_csv: Path = TRAIN_CSV,
    window: int = DEFAULT_WINDOW,
    min_flowers: int = DEFAULT_MIN_FLOWERS,
    html_path: Path = DRIFT_HTML,
    json_path: Path = DRIFT_JSON,
    publish: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Run the check; returns (exit code, the verdict written to json_path)."""
    logged = read_logged_flowers(log_dir, window)
    reference = pd.read_csv(reference_csv)
    now = time.time()
    verdict: dict[str, Any] = {
        "drift_detected": None,
        "drifted_features": [],
        "window": len(logged.flowers),
        "window_requested": window,
        "reference_rows": len(reference),
        "reference": str(reference_csv),
        "log_dir": str(log_dir),
        "read_lines": logged.read_lines,
        "skipped_lines": logged.skipped_lines,
        "checked_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        "checked_at_unix": now,
    }
    if len(logged.flowers) < min_flowers:
        verdict.update(status="too_few_flowers", min_flowers=min_flowers, method="none: too few flowers")
        html_path.unlink(missing_ok=True)  # never leave an older report that looks like this run's
        write_json(json_path, verdict)
        return EXIT_TOO_FEW, verdict
    summary, snapshot = compare(logged.flowers, reference)
    verdict.update(summary, status="drift" if summary["drift_detected"] else "no_drift")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    write_json(json_path, verdict)
    if publish:
        try:  # for the service's gauges; the log dir may be read-only to this job
            write_json(log_dir / DRIFT_STATUS_FILE, verdict)
        except OSError as error:
            print(f"drift: could not publish the verdict to {log_dir} ({error}); reports are written", file=sys.stderr)
    return (EXIT_DRIFT if summary["drift_detected"] else EXIT_NO_DRIFT), verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-dir", type=Path, default=None, help="prediction log folder (default $IRIS_MONITOR_DIR)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="the last N logged flowers")
    parser.add_argument("--min-flowers", type=int, default=DEFAULT_MIN_FLOWERS)
    parser.add_argument("--reference", type=Path, default=TRAIN_CSV, help="the training split")
    parser.add_argument("--html", type=Path, default=DRIFT_HTML)
    parser.add_argument("--json", type=Path, default=DRIFT_JSON)
    parser.add_argument("--no-publish", action="store_true", help="do not write drift.json into the log folder")
    args = parser.parse_args(argv)
    log_dir = args.log_dir or monitor_dir()
    code, verdict = check(
        log_dir=log_dir,
        reference_csv=args.reference,
        window=args.window,
        min_flowers=args.min_flowers,
        html_path=args.html,
        json_path=args.json,
        publish=not args.no_publish,
    )
    skipped = f"; {verdict['skipped_lines']} empty or corrupt log lines skipped" if verdict["skipped_lines"] else ""
    if code == EXIT_TOO_FEW:
        print(
            f"drift: only {verdict['window']} flowers logged in {log_dir} (at least {args.min_flowers} needed)"
            f"{skipped}; wrote {args.json}"
        )
    else:
        drifted = ", ".join(verdict["drifted_features"]) or "none"
        print(
            f"drift: {'DRIFT' if code == EXIT_DRIFT else 'no drift'} in the last {verdict['window']} flowers vs "
            f"{verdict['reference_rows']} training rows ({verdict['method']}); drifted: {drifted}{skipped}; "
            f"wrote {args.html} and {args.json}"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
