"""Jenkinsfile.promote: one existing make target per stage, the verdict read from the report the job writes, and
production promoted only on `pass`."""

from __future__ import annotations

import re

from iris_classifier.project.paths import ROOT
from iris_classifier.retraining.shadow_report import SHADOW_JSON, VERDICTS
from ops.jenkins_steps import stage_bodies, stages
from tests.jenkinsfile_harness import assert_each_stage_runs_one_make_target

JENKINSFILE = (ROOT / "Jenkinsfile.promote").read_text()


def test_each_stage_calls_one_make_target_that_exists():
    parsed = stages(JENKINSFILE)
    assert [stage.name for stage in parsed] == [
        "Checkout",
        "Install requirements",
        "Pull data and model",
        "Shadow report",
        "Promote",
    ]
    assert_each_stage_runs_one_make_target(JENKINSFILE)
    assert all("timeout(time:" in body for name, body in stage_bodies(JENKINSFILE).items() if name != "Checkout")
    assert re.search(r"triggers\s*\{[^}]*cron\('H \d+ \* \* \*'\)", JENKINSFILE)
    assert "disableConcurrentBuilds()" in JENKINSFILE


def test_only_a_passing_report_promotes_its_own_version():
    assert [stage.name for stage in stages(JENKINSFILE) if stage.conditional] == ["Promote"]
    bodies = stage_bodies(JENKINSFILE)
    assert "when { expression { env.SHADOW_CANDIDATE } }" in bodies["Promote"]
    assert 'make promote VERSION="$SHADOW_CANDIDATE" STAGE=production PUSH=1' in bodies["Promote"]
    # the candidate is set once, on exit 0 and verdict pass, to the version the report judged
    assert JENKINSFILE.count("env.SHADOW_CANDIDATE = ") == 1
    assert re.search(
        r"code == 0 && verdict == 'pass'\) \{\s*env\.SHADOW_CANDIDATE = field\(report, 'challenger_version'\)",
        bodies["Shadow report"],
    )
    # the verdicts it reads are the report's, and the report is archived from where the job writes it
    assert set(re.findall(r"'(pass|fail|insufficient)'", bodies["Shadow report"])) == set(VERDICTS)
    assert f"REPORT = '{SHADOW_JSON.relative_to(ROOT).as_posix()}'" in JENKINSFILE
    archived = re.search(r"archiveArtifacts artifacts: '([^']+)'", bodies["Shadow report"]).group(1).split(", ")
    assert archived == ["reports/shadow.json", "reports/shadow.html"]
    assert 'make shadow-report IRIS_MONITOR_DIR="$IRIS_MONITOR_DIR" VERSION="$VERSION"' in bodies["Shadow report"]


def test_secrets_come_from_credentials_and_are_never_interpolated_by_groovy():
    assert 'sh "' not in JENKINSFILE and 'sh(script: "' not in JENKINSFILE
    bodies = stage_bodies(JENKINSFILE)
    assert "variable: 'GDRIVE_CREDENTIALS_DATA')]) {" in bodies["Pull data and model"]
    assert "withCredentials([gitUsernamePassword(credentialsId: '" in bodies["Promote"]
