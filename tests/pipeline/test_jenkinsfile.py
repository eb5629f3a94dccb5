"""The Jenkinsfile is thin: the original stages, one existing make target each, the key never echoed."""

from __future__ import annotations

import re

from ops.jenkins_steps import stage_bodies
from tests.conftest import ROOT
from tests.jenkinsfile_harness import assert_each_stage_runs_one_make_target

JENKINSFILE = (ROOT / "Jenkinsfile").read_text()
STAGES = [
    "Checkout",
    "Install requirements",
    "Registry",
    "Pull DVC data",
    "Run tests",
    "Build image",
    "Publish image",
    "Run container",
    "Smoke test",
    "Deploy",  # off unless DEPLOY_TO is set (tests/deploy/test_jenkins_deploy.py)
]


def test_stages_are_the_original_pipeline_in_order():
    assert list(stage_bodies(JENKINSFILE)) == STAGES


def test_each_stage_after_checkout_calls_exactly_one_existing_make_target():
    assert_each_stage_runs_one_make_target(JENKINSFILE)


def test_drive_key_is_bound_from_credentials_and_never_interpolated_by_groovy():
    pull = stage_bodies(JENKINSFILE)["Pull DVC data"]
    binding = r"withCredentials\(\[string\(credentialsId: '[^']+',\s*variable: 'GDRIVE_CREDENTIALS_DATA'\)\]\)"
    assert re.search(binding, pull)
    assert 'sh "' not in JENKINSFILE  # double-quoted sh would let Groovy expand secrets into the log
    assert "echo $GDRIVE" not in JENKINSFILE and "${GDRIVE" not in JENKINSFILE
    assert "choice(name: 'DVC_REMOTE'" in JENKINSFILE and 'DVC_REMOTE="$DVC_REMOTE"' in pull


def test_tests_publish_junit_and_the_build_is_guarded():
    tests = stage_bodies(JENKINSFILE)["Run tests"]
    assert "--junitxml=test-artifacts/junit.xml" in tests
    assert re.search(r"post \{\s*always \{\s*junit [^\n]*test-artifacts/junit.xml", tests)
    for option in ("disableConcurrentBuilds()", "githubPush()", "timeout(time:"):
        assert option in JENKINSFILE
    assert all("timeout(time:" in body for name, body in stage_bodies(JENKINSFILE).items() if name != "Checkout")


def test_the_registry_decides_what_a_build_does():
    """gto check-ref on the pushed tag: a version builds, tests and publishes; a stage deploys; an old one nothing."""
    bodies = stage_bodies(JENKINSFILE)
    assert 'make -s registry-ref REF="$TAG_NAME"' in bodies["Registry"]
    when = {name: re.search(r"when \{ expression \{ (.+?) \} \}", body) for name, body in bodies.items()}
    build = "env.REGISTRY_EVENT in ['none', 'registration']"
    deploy = "env.REGISTRY_EVENT in ['none', 'assignment']"
    expected = {
        "Checkout": None,
        "Install requirements": None,
        "Registry": None,
        "Pull DVC data": build,
        "Run tests": build,
        "Build image": build,
        "Publish image": "env.REGISTRY_EVENT == 'registration'",
        "Run container": deploy,
        "Smoke test": deploy,
        "Deploy": "params.DEPLOY_TO != 'none'",  # Kubernetes, off by default (tests/deploy)
    }
    assert {name: match and match.group(1) for name, match in when.items()} == expected
    # One REGISTRY for the image a release publishes and the image a deploy renders.
    assert 'make publish-image VERSION="$REGISTRY_VERSION" REGISTRY="$REGISTRY"' in bodies["Publish image"]
    assert "env.CONTAINER = ref[0] == 'assignment' ? \"iris-classifier-${ref[2]}\"" in bodies["Registry"]
    # ops.jenkins_steps (.ci/run) evaluates these conditions as a branch build: every original stage runs.
    from ops.jenkins_steps import stages

    skipped = {stage.name for stage in stages(JENKINSFILE) if stage.conditional}
    assert skipped == {"Publish image", "Deploy"}


def test_every_jenkinsfile_is_linted():
    """make lint-jenkinsfile parses each pipeline of the repository (Jenkinsfile, .drift, .retrain, .promote)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlint-jenkinsfile:", 1)[1].split("\n\n", 1)[0]
    linted = set(re.findall(r"\.\./\.\./(Jenkinsfile[\w.]*)", recipe))
    assert linted == {path.name for path in ROOT.glob("Jenkinsfile*")}
