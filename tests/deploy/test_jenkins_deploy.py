"""The Jenkins Deploy stage, and `make k8s-deploy`'s sequence against a stand-in kubectl (no cluster runs here)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

from iris_classifier.project.paths import ROOT
from tests.pipeline.test_jenkinsfile import JENKINSFILE, stage_bodies

FAKE_KUBECTL = """#!/bin/sh
# Records every call; `kustomize` is passed to the real kubectl; `rollout status` fails when asked to.
echo "$*" >> "$KUBECTL_LOG"
case "$1" in kustomize) exec "$REAL_KUBECTL" "$@";; esac
case "$*" in *"rollout status"*) [ -n "$FAIL_ROLLOUT" ] && [ ! -e "$KUBECTL_LOG.undone" ] && exit 1;; esac
case "$*" in *"rollout undo"*) touch "$KUBECTL_LOG.undone";; esac
exit 0
"""


def test_deploy_stage_is_off_by_default_and_binds_the_kubeconfig():
    deploy = stage_bodies()["Deploy"]
    assert "choice(name: 'DEPLOY_TO', choices: ['none', 'staging', 'production']" in JENKINSFILE
    assert re.search(r"when \{ expression \{ params\.DEPLOY_TO != 'none' \} \}", deploy)
    assert "withCredentials([file(credentialsId: 'kubeconfig', variable: 'KUBECONFIG')])" in deploy
    assert 'sh \'make k8s-deploy ENV="$DEPLOY_TO" REGISTRY="$REGISTRY"\'' in deploy
    assert list(stage_bodies())[-2:] == ["Smoke test", "Deploy"]


def fake_kubectl(tmp_path, *, fail_rollout: bool) -> tuple[dict, object]:
    script = tmp_path / "kubectl"
    script.write_text(FAKE_KUBECTL)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "KUBECTL": str(script),
        "REAL_KUBECTL": str(ROOT / ".venv" / "bin" / "kubectl"),
        "KUBECTL_LOG": str(log),
        "FAIL_ROLLOUT": "1" if fail_rollout else "",
    }
    return env, log


def test_failed_rollout_is_undone(tmp_path):
    env, log = fake_kubectl(tmp_path, fail_rollout=True)
    result = subprocess.run(
        [sys.executable, "-m", "ops.k8s", "deploy", "--env", "staging", "--tag", "0123abc"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "failed and was rolled back" in result.stdout + result.stderr
    calls = [line for line in log.read_text().splitlines() if not line.startswith("kustomize")]
    assert calls == [
        "apply -f " + str(ROOT / "build" / "k8s" / "staging.yaml"),
        "-n iris-staging rollout status deployment/iris-classifier --timeout=300s",
        "-n iris-staging rollout undo deployment/iris-classifier",
        "-n iris-staging rollout status deployment/iris-classifier --timeout=300s",
    ]
