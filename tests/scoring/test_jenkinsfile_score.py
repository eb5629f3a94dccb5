"""Jenkinsfile.score: parameterised, one existing make target per stage, the production model, the summary archived."""

from __future__ import annotations

import re
import subprocess

from iris_classifier.project.paths import ROOT
from iris_classifier.scoring.locations import SUMMARY_FILE
from ops.jenkins_steps import stage_bodies

JENKINSFILE = (ROOT / "Jenkinsfile.score").read_text()


def test_each_stage_calls_one_make_target_that_exists():
    bodies = stage_bodies(JENKINSFILE)
    assert list(bodies) == ["Checkout", "Install requirements", "Production model", "Score"]
    for name, body in bodies.items():
        targets = re.findall(r"make ([a-z-]+)", body.split("post {")[0])
        if name == "Checkout":
            assert targets == []
            continue
        assert len(targets) == 1, f"{name}: {targets}"
        dry_run = subprocess.run(["make", "-n", targets[0]], cwd=ROOT, capture_output=True, text=True)
        assert dry_run.returncode == 0, f"{name}: make {targets[0]}: {dry_run.stderr}"


def test_it_scores_the_parameters_file_with_the_production_model_and_archives_the_summary():
    for parameter in ("INPUT", "OUTPUT_DIR", "FORMAT", "SPARK_MASTER", "DVC_REMOTE"):
        assert f"(name: '{parameter}'" in JENKINSFILE
    score = stage_bodies(JENKINSFILE)["Score"]
    command = " ".join(re.findall(r"'([^']*)'", score.split("post {")[0]))
    assert 'make score INPUT="$INPUT" OUTPUT="$OUTPUT_DIR" FORMAT="$FORMAT"' in command
    assert "STAGE=production" in command and 'DVC_REMOTE="$DVC_REMOTE"' in command
    assert f'archiveArtifacts artifacts: "${{params.OUTPUT_DIR}}/{SUMMARY_FILE}"' in score
    assert "make which STAGE=production" in stage_bodies(JENKINSFILE)["Production model"]


def test_the_key_is_never_interpolated_by_groovy():
    assert "${GDRIVE_CREDENTIALS_DATA}" not in JENKINSFILE and "$GDRIVE_CREDENTIALS_DATA" not in JENKINSFILE
    assert "variable: 'GDRIVE_CREDENTIALS_DATA'" in JENKINSFILE
