"""Gauges the service appends to its /metrics at scrape time: readiness, resident memory, the last drift check.

BentoML runs prometheus_client in multiprocess mode, which has no process collector, so memory is read
here (psutil, already a BentoML dependency). The drift gauges come from the verdict the drift check
(`python -m iris_classifier.monitoring.drift`) leaves next to the prediction log it read
(`$IRIS_MONITOR_DIR/drift.json`): the service re-reads it when it changes, so Prometheus sees the
verdict at the next scrape and the `IrisInputDrift` alert can fire with no extra exporter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from iris_classifier.data.production_log import monitor_dir

DRIFT_STATUS_FILE = "drift.json"

_cache: dict[str, Any] = {"key": None, "text": ""}


def memory_lines() -> list[str]:
    """Resident memory of this server's processes: its supervisor and every worker (one per pid)."""
    me = psutil.Process()
    lines = [
        "# HELP iris_process_resident_memory_bytes Resident memory of the serving processes, by role and pid",
        "# TYPE iris_process_resident_memory_bytes gauge",
    ]
    processes = [("worker", me)]
    try:
        parent = me.parent()
        if parent is not None and "bentoml" in " ".join(parent.cmdline()):
            processes = [("supervisor", parent)] + [("worker", child) for child in parent.children()]
    except psutil.Error:  # the parent went away or is not ours to read: this worker alone
        pass
    for role, process in processes:
        try:
            rss = process.memory_info().rss
        except psutil.Error:
            continue
        lines.append(f'iris_process_resident_memory_bytes{{role="{role}",pid="{process.pid}"}} {rss}')
    return lines


def drift_lines(path: Path) -> list[str]:
    """The last drift verdict as gauges; nothing when no check has run (or its file is unreadable)."""
    try:
        stat = path.stat()
    except OSError:
        return []
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if _cache["key"] == key:
        return _cache["text"]
    try:
        verdict = json.loads(path.read_text())
        features = verdict.get("features", {})
        detected = verdict["drift_detected"]
        lines = [
            "# HELP iris_drift_detected 1 when the last drift check found input drift, 0 when not",
            "# TYPE iris_drift_detected gauge",
            f"iris_drift_detected {int(bool(detected))}",
            "# HELP iris_drift_score Share of the input features the last drift check found drifted (0..1)",
            "# TYPE iris_drift_score gauge",
            f"iris_drift_score {float(verdict['drift_share'])}",
            "# HELP iris_drift_feature_drifted 1 for each feature the last drift check found drifted",
            "# TYPE iris_drift_feature_drifted gauge",
            *(f'iris_drift_feature_drifted{{feature="{n}"}} {int(f["drifted"])}' for n, f in features.items()),
            "# HELP iris_drift_feature_score Drift statistic per feature (method label; K-S p-value: low = drift)",
            "# TYPE iris_drift_feature_score gauge",
            *(
                f'iris_drift_feature_score{{feature="{n}",method="{f["method"]}"}} {float(f["score"])}'
                for n, f in features.items()
            ),
            "# HELP iris_drift_window_flowers Logged flowers the last drift check compared with the training split",
            "# TYPE iris_drift_window_flowers gauge",
            f"iris_drift_window_flowers {int(verdict['window'])}",
            "# HELP iris_drift_checked_timestamp_seconds When the last drift check ran (Unix time)",
            "# TYPE iris_drift_checked_timestamp_seconds gauge",
            f"iris_drift_checked_timestamp_seconds {float(verdict['checked_at_unix'])}",
        ]
    except (OSError, ValueError, KeyError, TypeError):
        lines = []  # a half-written or foreign file: no drift gauges rather than a broken /metrics
    _cache.update(key=key, text=lines)
    return lines


def status_metrics(ready: bool) -> str:
    """Prometheus text to append to the service's own /metrics."""
    lines = [
        "# HELP iris_service_ready 1 once the model is loaded and the service answers /readyz with 200",
        "# TYPE iris_service_ready gauge",
        f"iris_service_ready {int(ready)}",
        *memory_lines(),
        *drift_lines(monitor_dir() / DRIFT_STATUS_FILE),
    ]
    return "\n".join(lines) + "\n"


def append_status_metrics(text: str, ready: bool) -> str:
    """The service's `__metrics__` hook: BentoML's exposition, then these gauges."""
    return text + status_metrics(ready)
