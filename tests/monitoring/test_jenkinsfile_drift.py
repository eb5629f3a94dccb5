"""Jenkinsfile.drift: scheduled, one existing make target per stage, UNSTABLE on drift, the report archived."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from iris_classifier.project.paths import ROOT
from ops.jenkins_steps import stages
from tests.jenkinsfile_harness import pipeline_runner

JENKINSFILE = (ROOT / "Jenkinsfile.drift").read_text()


def test_runs_on_a_cron_schedule_with_the_log_folder_as_a_parameter():
    assert re.search(r"triggers\s*\{[^}]*cron\('H \d+ \* \* \*'\)", JENKINSFILE)
    assert "string(name: 'MONITOR_DIR'" in JENKINSFILE and "string(name: 'DRIFT_WINDOW'" in JENKINSFILE


def test_each_stage_calls_one_make_target_that_exists():
    parsed = stages(JENKINSFILE)  # the stages and their sh steps, as .ci/run runs them (ops/jenkins_steps.py)
    assert [stage.name for stage in parsed] == ["Checkout", "Install requirements", "Pull training data", "Drift check"]
    assert parsed[0].steps == []
    for stage in parsed[1:]:
        assert len(stage.steps) == 1 and not stage.post_steps and not stage.conditional, stage
        command = shlex.split(stage.steps[0])
        assert command[0] == "make", stage
        dry_run = subprocess.run(["make", "-n", command[1]], cwd=ROOT, capture_output=True, text=True)
        assert dry_run.returncode == 0, f"{stage.name}: make {command[1]}: {dry_run.stderr}"
    drift = parsed[-1].steps[0]
    assert shlex.split(drift) == ["make", "drift", "DRIFT_LOG_DIR=$MONITOR_DIR", "DRIFT_WINDOW=$DRIFT_WINDOW"]


def drift_report(tmp_path: Path, status: str) -> str:
    """reports/drift.json as make drift writes it (drift.write_json), with this status."""
    from iris_classifier.monitoring.drift import write_json

    path = tmp_path / f"{status}.json"
    write_json(path, {"status": status, "window": 500})
    return path.read_text()


@pytest.mark.slow
def test_the_drift_stage_run_by_groovy_sets_the_build_result_from_the_verdict(tmp_path):
    """The Jenkinsfile itself, Jenkins' steps stubbed (tests/jenkinsfile_harness.py): what each exit code and
    verdict of `make drift` makes of the build, the report archived either way."""
    from iris_classifier.monitoring.drift import EXIT_DRIFT, EXIT_NO_DRIFT, EXIT_TOO_FEW

    drift, too_few = drift_report(tmp_path, "drift"), drift_report(tmp_path, "too_few_flowers")
    no_drift = drift_report(tmp_path, "no_drift")
    # make exits 2 for any non-zero exit of its recipe
    scenarios = [(EXIT_NO_DRIFT, no_drift), (2, drift), (2, too_few), (2, None), (2, no_drift)]
    assert EXIT_DRIFT != EXIT_NO_DRIFT != EXIT_TOO_FEW
    run = pipeline_runner(tmp_path, ROOT / "Jenkinsfile.drift", "drift", "reports/drift.json", scenarios)
    steps = ["make install", 'make pull DVC_REMOTE="$DVC_REMOTE"',
             'make drift DRIFT_LOG_DIR="$MONITOR_DIR" DRIFT_WINDOW="$DRIFT_WINDOW"']  # fmt: skip
    results = {}
    for code, report in scenarios:
        outcome = run(code, report)
        assert outcome["ran"] == steps and outcome["archived"] == ["reports/drift.html, reports/drift.json"]
        results[(code, report)] = outcome["result"]
    assert results == {
        (EXIT_NO_DRIFT, no_drift): "SUCCESS",
        (2, drift): "UNSTABLE",  # input drift: a warning, not a broken build
        (2, too_few): "SUCCESS",  # too few flowers logged yet to judge
        (2, None): "FAILURE",  # make drift failed before writing its verdict
        (2, no_drift): "FAILURE",  # a failure whose report says nothing of drift
    }


def test_the_key_is_never_interpolated_by_groovy():
    for line in JENKINSFILE.splitlines():
        if "GDRIVE_CREDENTIALS_DATA" in line and "sh " in line:
            assert '"' not in line.split("sh ", 1)[1].split("'")[0]
    assert "${GDRIVE_CREDENTIALS_DATA}" not in JENKINSFILE and "echo $GDRIVE" not in JENKINSFILE
