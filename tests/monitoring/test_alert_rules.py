"""promtool over the Prometheus config, the alert rules and their unit tests (monitoring/tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from iris_classifier.monitoring.dashboard import PROMETHEUS_APT
from iris_classifier.project.paths import ROOT

MONITORING = ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason=f"promtool is not installed: {PROMETHEUS_APT}")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_config_is_valid_and_loads_the_rules():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_rules_are_valid():
    result = promtool("check", "rules", *sorted(str(p) for p in (MONITORING / "rules").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout


def test_every_alert_fires_on_its_synthetic_series_and_stays_silent_on_a_normal_one():
    tests = sorted(str(p) for p in (MONITORING / "tests").glob("*.yml"))
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    # every alert of the rules is exercised by at least one test
    import yaml

    alerts = set(alerting_rules())
    tested = {
        case["alertname"]
        for path in tests
        for test in yaml.safe_load(Path(path).read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts == tested, f"alerts without a firing test: {alerts - tested}"


def alerting_rules() -> dict[str, dict]:
    import yaml

    return {
        rule["alert"]: rule
        for path in (MONITORING / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_the_live_accuracy_alert_uses_the_pipelines_gate():
    """One gate: the alert fires below params.yaml evaluate.min_accuracy, the accuracy the pipeline refuses under."""
    from iris_classifier.project.params import load_params

    gate = load_params("evaluate")["min_accuracy"]
    rule = alerting_rules()["IrisLiveAccuracyLow"]
    threshold = re.search(r"iris:feedback_accuracy:ratio_rate1h < ([0-9.]+)", rule["expr"])
    assert threshold and float(threshold.group(1)) == gate, rule["expr"]
    assert f"{gate:.0%} gate" in rule["annotations"]["summary"]
    assert f"fewer than {gate:.0%}" in rule["annotations"]["description"]
    # enough labels to judge: a minimum count of labels whose prediction was known
    assert re.search(r"iris:feedback_labels_judged:increase1h >= [1-9][0-9]+", rule["expr"])


def test_a_broken_rule_file_is_refused(tmp_path):
    """The checks above are not vacuous: promtool rejects a rule with a bad expression."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(up[5m]\n")
    result = promtool("check", "rules", str(bad))
    assert result.returncode != 0
