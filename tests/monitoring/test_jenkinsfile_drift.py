"""Jenkinsfile.drift: scheduled, one existing make target per stage, UNSTABLE on drift, the report archived."""

from __future__ import annotations

import re
import shlex
import subprocess

from iris_classifier.project.paths import ROOT
from ops.jenkins_steps import stages

JENKINSFILE = (ROOT / "Jenkinsfile.drift").read_text()


def stage_bodies() -> dict[str, str]:
    parts = re.split(r"stage\('([^']+)'\)", JENKINSFILE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


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


def test_drift_marks_the_build_unstable_and_the_report_is_archived():
    drift = stage_bodies()["Drift check"]
    assert 'make drift DRIFT_LOG_DIR="$MONITOR_DIR" DRIFT_WINDOW="$DRIFT_WINDOW"' in drift
    assert "returnStatus: true" in drift
    # the statuses it reads are the ones the drift check writes
    from iris_classifier.monitoring import drift as check_module

    source = (ROOT / "iris_classifier" / "monitoring" / "drift.py").read_text()
    for status in ("drift", "too_few_flowers"):
        assert f'"status": "{status}"' in drift and f'"{status}"' in source
    assert re.search(r"verdict\.contains\('\"status\": \"drift\"'\)\)\s*\{\s*unstable\(", drift)
    assert "archiveArtifacts artifacts: 'reports/drift.html" in drift
    assert check_module.DRIFT_HTML.relative_to(ROOT).as_posix() == "reports/drift.html"


def test_the_key_is_never_interpolated_by_groovy():
    for line in JENKINSFILE.splitlines():
        if "GDRIVE_CREDENTIALS_DATA" in line and "sh " in line:
            assert '"' not in line.split("sh ", 1)[1].split("'")[0]
    assert "${GDRIVE_CREDENTIALS_DATA}" not in JENKINSFILE and "echo $GDRIVE" not in JENKINSFILE
