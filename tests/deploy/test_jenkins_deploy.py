"""The Jenkins Publish and Deploy stages, and what `make k8s-deploy` refuses before it touches a cluster (a stand-in
kubectl records every call; no cluster runs here). The deploys that reach kubectl need a real registry and a
signed image: tests/publish/test_deploy_gate.py."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

from iris_classifier.project.paths import ROOT
from ops.jenkins_steps import stage_bodies
from tests.pipeline.test_jenkinsfile import JENKINSFILE

FAKE_KUBECTL = """#!/bin/sh
# Records every call; `kustomize` is passed to the real kubectl; `rollout status` fails when asked to.
echo "$*" >> "$KUBECTL_LOG"
case "$1" in kustomize) exec "$REAL_KUBECTL" "$@";; esac
case "$*" in *"rollout status"*) [ -n "$FAIL_ROLLOUT" ] && [ ! -e "$KUBECTL_LOG.undone" ] && exit 1;; esac
case "$*" in *"rollout undo"*) touch "$KUBECTL_LOG.undone";; esac
exit 0
"""


def test_deploy_stage_is_off_by_default_and_deploys_a_published_version_by_digest():
    deploy = stage_bodies(JENKINSFILE)["Deploy"]
    assert "choice(name: 'DEPLOY_TO', choices: ['none', 'staging', 'production']" in JENKINSFILE
    assert re.search(r"when \{ expression \{ params\.DEPLOY_TO != 'none' \} \}", deploy)
    # The kubeconfig, the signing key's public half and the registry's credentials: bound, never interpolated.
    assert "file(credentialsId: 'kubeconfig', variable: 'KUBECONFIG')" in deploy
    assert "file(credentialsId: 'image-signing-pubkey', variable: 'SIGN_PUBKEY')" in deploy
    assert "usernamePassword(credentialsId: 'registry-credentials'" in deploy
    # The version the Registry stage found (a release or a stage tag), from REGISTRY: the one knob.
    assert 'sh \'make k8s-deploy ENV="$DEPLOY_TO" REGISTRY="$REGISTRY" VERSION="$REGISTRY_VERSION"\'' in deploy
    assert list(stage_bodies(JENKINSFILE))[-2:] == ["Smoke test", "Deploy"]


def test_publish_stage_signs_pushes_and_archives_the_sbom_and_the_digest_record():
    publish = stage_bodies(JENKINSFILE)["Publish image"]
    assert "file(credentialsId: 'image-signing-key', variable: 'SIGN_KEY')" in publish
    assert re.search(r"usernamePassword\(credentialsId: 'registry-credentials',\s*usernameVariable: 'REGISTRY_USER',"
                     r"\s*passwordVariable: 'REGISTRY_PASSWORD'\)", publish)  # fmt: skip
    assert 'sh \'make publish-image VERSION="$REGISTRY_VERSION" REGISTRY="$REGISTRY" SIGN_KEY="$SIGN_KEY"\'' in publish
    archived = re.search(r"post \{\s*success \{\s*archiveArtifacts artifacts: '([^']+)'", publish)
    assert archived and set(archived.group(1).split(", ")) == {"build/image.json", "build/sbom.cdx.json"}
    # The Makefile writes them there (IMAGE_RECORD and the SBOM next to it).
    makefile = (ROOT / "Makefile").read_text()
    assert "IMAGE_RECORD ?= $(CURDIR)/build/image.json" in makefile
    from ops.publish import RECORD, SBOM_NAME

    assert RECORD == ROOT / "build" / "image.json" and SBOM_NAME == "sbom.cdx.json"
    # One knob: the REGISTRY parameter, passed as is to both stages.
    assert "string(name: 'REGISTRY'" in JENKINSFILE
    assert JENKINSFILE.count('REGISTRY="$REGISTRY"') == 2


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
    for name in ("REGISTRY", "SIGN_PUBKEY", "IMAGE_TAG", "IMAGE_RECORD"):
        env.pop(name, None)
    return env, log


def deploy(tmp_path, *args: str, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ops.k8s", "deploy", "--env", "staging", "--out-dir", str(tmp_path / "k8s"),
               "--record", str(tmp_path / "image.json"), *args]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def applied(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if not line.startswith("kustomize")] if log.exists() else []


def test_a_tag_without_a_registry_has_no_digest_and_is_refused(tmp_path):
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    result = deploy(tmp_path, "--tag", "0123abc", "--pubkey", str(tmp_path / "key.pub"), env=env)
    assert result.returncode != 0
    assert "k8s-deploy: REGISTRY is empty" in result.stderr and "by the digest" in result.stderr
    assert applied(log) == []


def test_a_deploy_without_the_public_key_is_refused(tmp_path):
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    result = deploy(tmp_path, "--version", "1.2.0", "--registry", "127.0.0.1:9", env=env)
    assert result.returncode != 0 and "k8s-deploy: SIGN_PUBKEY is empty" in result.stderr
    assert applied(log) == []


def test_a_branch_build_has_no_version_to_deploy(tmp_path):
    """The Registry stage answers `none - -` for a branch: VERSION is '-', and nothing was published."""
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    result = deploy(tmp_path, "--version", "-", "--registry", "127.0.0.1:9", "--pubkey", "k.pub", env=env)
    assert result.returncode != 0 and "registered no version, so it published no image" in result.stderr
    assert applied(log) == []


def test_a_public_key_file_that_holds_no_key_is_refused(tmp_path):
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    pubkey = tmp_path / "key.pub"
    pubkey.write_text("not a key")
    result = deploy(tmp_path, "--version", "1.2.0", "--registry", "127.0.0.1:9", "--pubkey", str(pubkey), env=env)
    assert result.returncode != 0 and "SIGN_PUBKEY=" in result.stderr and "holds 0 GPG public keys" in result.stderr
    assert applied(log) == []


def test_the_retrain_shadow_stage_publishes_and_deploys_with_the_publish_and_deploy_stages_credentials():
    """Jenkinsfile.retrain's 'Shadow in production' does what Publish image and Deploy do, for production and the
    staged version: the same credentials, bound the same way (make deploy-shadow reads them from the environment)."""
    shadow = stage_bodies((ROOT / "Jenkinsfile.retrain").read_text())["Shadow in production"]
    main = stage_bodies(JENKINSFILE)
    credential = re.compile(r"(?:string|file|usernamePassword)\(credentialsId: '[^']+',\s*\w+: '\w+'")

    def bindings(body: str) -> set[str]:
        return {re.sub(r"\s+", " ", found) for found in credential.findall(body)}

    needed = bindings(main["Publish image"]) | bindings(main["Deploy"])
    assert len(needed) == 4  # the signing key, the registry's login, the kubeconfig, the signing key's public half
    assert needed <= bindings(shadow)
    assert re.findall(r"\bsh '([^']+)'", shadow) == [
        'make deploy-shadow VERSION="$STAGED_VERSION" REGISTRY="$REGISTRY" DVC_REMOTE="$DVC_REMOTE"'
    ]
    # the Makefile hands the bound files on to ops.shadow_deploy, which reads them as these variables
    recipe = re.search(r"^deploy-shadow:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    for name in ("REGISTRY", "SIGN_KEY", "SIGN_PUBKEY"):
        assert f'{name}="$({name})"' in recipe, name
    assert "--dvc-remote $(DVC_REMOTE)" in recipe
