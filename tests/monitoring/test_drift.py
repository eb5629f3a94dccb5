"""The drift check on prediction logs written by the real log writer: no drift, drift, too few, bad lines."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from iris_classifier.domain.schema import FEATURES
from iris_classifier.monitoring.drift import EXIT_DRIFT, EXIT_NO_DRIFT, EXIT_TOO_FEW, check, read_logged_flowers
from iris_classifier.monitoring.synthetic_traffic import training_flowers
from iris_classifier.project.paths import ROOT
from iris_classifier.serving.prediction_log import MONITOR_NAME, PredictionLog
from iris_classifier.serving.status_metrics import drift_lines


def write_log(log_dir, flowers) -> None:
    """Flowers through the service's own log writer (BentoML's layout), as if classified."""
    log = PredictionLog("iris_classifier:test", log_dir=log_dir, enabled=True, name=MONITOR_NAME)
    rows = np.array([[flower[name] for name in FEATURES] for flower in flowers])
    log.record_batch(rows, ["setosa"] * len(flowers), np.tile([1.0, 0.0, 0.0], (len(flowers), 1)))
    log.flush()


@pytest.fixture
def log_dir(pipeline_ready, tmp_path, monkeypatch):  # the training split is the reference
    from bentoml._internal.monitoring.api import _MONITOR_INSTANCES

    monkeypatch.delitem(_MONITOR_INSTANCES, MONITOR_NAME, raising=False)  # a fresh writer for this folder
    yield tmp_path / "monitor"
    _MONITOR_INSTANCES.pop(MONITOR_NAME, None)


def run_check(log_dir, tmp_path, **kwargs):
    return check(log_dir=log_dir, html_path=tmp_path / "drift.html", json_path=tmp_path / "drift.json", **kwargs)


def test_resampled_training_flowers_show_no_drift(log_dir, tmp_path):
    write_log(log_dir, training_flowers(500, seed=11))
    code, verdict = run_check(log_dir, tmp_path)
    assert code == EXIT_NO_DRIFT
    assert verdict["drift_detected"] is False and verdict["drifted_features"] == []
    assert verdict["window"] == 500 and verdict["reference_rows"] == 120
    assert "K-S p_value" in verdict["method"]
    assert json.loads((tmp_path / "drift.json").read_text()) == verdict
    assert "petal_length" in (tmp_path / "drift.html").read_text()


def test_petal_length_plus_2_5_cm_is_drift_naming_petal_length(log_dir, tmp_path):
    write_log(log_dir, training_flowers(300, seed=12, shift={"petal_length": 2.5}))
    code, verdict = run_check(log_dir, tmp_path)
    assert code == EXIT_DRIFT
    assert verdict["drift_detected"] is True and verdict["drifted_features"] == ["petal_length"]
    assert verdict["features"]["petal_length"]["score"] < 0.05 < verdict["features"]["sepal_width"]["score"]
    assert '"status": "drift"' in (tmp_path / "drift.json").read_text()  # what Jenkinsfile.drift looks for
    # published next to the log, where the service turns it into gauges for the IrisInputDrift alert
    gauges = "\n".join(drift_lines(log_dir / "drift.json"))
    assert "iris_drift_detected 1" in gauges and 'iris_drift_feature_drifted{feature="petal_length"} 1' in gauges
    assert "iris_drift_score 0.25" in gauges


def test_only_the_last_window_counts(log_dir, tmp_path):
    """Shifted flowers long ago, in-distribution ones since: the window of the last 200 shows no drift."""
    write_log(log_dir, training_flowers(300, seed=13, shift={"petal_length": 2.5}))
    write_log(log_dir, training_flowers(200, seed=14))
    code, verdict = run_check(log_dir, tmp_path, window=200)
    assert (code, verdict["window"], verdict["drifted_features"]) == (EXIT_NO_DRIFT, 200, [])


def test_empty_and_corrupt_lines_are_skipped_and_counted(log_dir, tmp_path):
    write_log(log_dir, training_flowers(100, seed=15))
    data = log_dir / MONITOR_NAME / "data" / "data.0.log"
    with data.open("a") as log:
        log.write(
            '\n{"sepal_length": 5.1, "sepal_wid\nnot json at all\n{"sepal_length": "x", "sepal_width": 1, '
            '"petal_length": 1, "petal_width": 1}\nnull\n{"sepal_length": NaN, "sepal_width": 1, '
            '"petal_length": 1, "petal_width": 1}\n\x00\x00\n'
        )
    logged = read_logged_flowers(log_dir, window=500)
    assert (len(logged.flowers), logged.skipped_lines) == (100, 7)
    code, verdict = run_check(log_dir, tmp_path)
    assert code == EXIT_NO_DRIFT and verdict["skipped_lines"] == 7


def test_too_few_flowers_exits_2_saying_how_many(log_dir, tmp_path):
    write_log(log_dir, training_flowers(12, seed=16))
    (tmp_path / "drift.html").write_text("an older report")
    command = [
        sys.executable,
        "-m",
        "iris_classifier.monitoring.drift",
        "--log-dir",
        str(log_dir),
        "--html",
        str(tmp_path / "drift.html"),
        "--json",
        str(tmp_path / "drift.json"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_TOO_FEW, result.stderr
    assert "only 12 flowers logged" in result.stdout and "at least 50" in result.stdout
    assert json.loads((tmp_path / "drift.json").read_text())["status"] == "too_few_flowers"
    assert not (tmp_path / "drift.html").exists()  # no stale report that looks like this run's


def test_no_log_at_all_exits_2(log_dir, tmp_path):
    code, verdict = run_check(log_dir, tmp_path)
    assert (code, verdict["window"]) == (EXIT_TOO_FEW, 0)


def test_make_drift_fails_with_the_checks_exit_1_on_shifted_flowers(log_dir, tmp_path):
    write_log(log_dir, training_flowers(200, seed=17, shift={"petal_length": 2.5}))
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "drift",
            f"DRIFT_LOG_DIR={log_dir}",
            "DRIFT_WINDOW=150",
            f"DRIFT_HTML={tmp_path / 'drift.html'}",
            f"DRIFT_JSON={tmp_path / 'drift.json'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # GNU make exits 2 whenever a recipe fails; it names the check's own exit code (1: drift) in its message
    assert result.returncode == 2 and "drift] Error 1" in result.stderr, result.stdout + result.stderr
    verdict = json.loads((tmp_path / "drift.json").read_text())
    assert verdict["window"] == 150 and verdict["drifted_features"] == ["petal_length"]
    assert "DRIFT" in result.stdout and "petal_length" in result.stdout
