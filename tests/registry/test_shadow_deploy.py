"""`make deploy-shadow`: production's pods with the staged version as their shadow (Jenkinsfile.retrain), on a copy
where v1.0.0 is in production and v1.1.0, a later commit, is staged. No cluster and no Docker engine here:
DRY_RUN=1 resolves and renders what the deploy would apply; the refusals come before anything is built."""

from __future__ import annotations

import json

import pytest

from iris_classifier.registry.published import PublishedImage
from ops import k8s
from tests.registry.conftest import Copy

pytestmark = pytest.mark.slow

REGISTRY = "registry.example.com/ml"
DIGEST = "sha256:" + "5e" * 32


@pytest.fixture()
def staged_copy(production_copy) -> tuple[Copy, str]:
    """production_copy with v1.1.0 released on a new commit and staged; and v1.0.0's commit."""
    copy = production_copy
    for name in ("REGISTRY", "SIGN_KEY", "SIGN_PUBKEY", "IMAGE_RECORD"):  # what the make target reads, unset here
        copy.env.pop(name, None)
    production_commit = copy.git("rev-parse", "iris-classifier@v1.0.0^{commit}")
    copy.commit("a change after v1.0.0")
    copy.make("release", "VERSION=1.1.0")
    copy.make("promote", "VERSION=1.1.0", "STAGE=staging")
    return copy, production_commit


def rendered_container(copy: Copy) -> dict:
    docs = k8s.documents(copy.path / "build" / "k8s" / "production.yaml")
    (container,) = k8s.find(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_dry_run_renders_production_with_the_staged_shadow_in_the_image_built_at_production_commit(staged_copy):
    copy, production_commit = staged_copy
    model_tag = json.loads((copy.path / "models" / "model.json").read_text())["tag"]
    plan = copy.make("deploy-shadow", "VERSION=1.1.0", f"REGISTRY={REGISTRY}", "DRY_RUN=1").stdout
    # built from production's commit, not the checkout's (staging's) HEAD
    assert f"production v1.0.0 (commit {production_commit[:12]}) with v1.1.0 as its shadow" in plan
    published = f"{REGISTRY}/iris-classifier:v1.0.0-shadow-v1.1.0"
    assert f"iris-classifier:{production_commit}-shadow-v1.1.0 -> {published}" in plan
    container = rendered_container(copy)
    assert container["image"] == published  # not pushed yet: named by its tag
    env = {item["name"]: item["value"] for item in container["env"]}
    assert (env["IRIS_SHADOW"], env["IRIS_SHADOW_MODEL"]) == ("v1.1.0", model_tag)

    # once pushed (the record make deploy-shadow writes), the render names it by digest, as the deploy applies it
    PublishedImage(
        repository=f"{REGISTRY}/iris-classifier", tag="v1.0.0-shadow-v1.1.0", digest=DIGEST, commit=production_commit,
        registry_version="v1.0.0", source_image=f"iris-classifier:{production_commit}-shadow-v1.1.0",
        image_id="sha256:" + "0" * 64, pushed_at="2025-01-01T00:00:00Z", push_seconds=1.0,
    ).save(copy.path / "build" / "image.json")  # fmt: skip
    copy.make("deploy-shadow", "VERSION=1.1.0", f"REGISTRY={REGISTRY}", "DRY_RUN=1")
    container = rendered_container(copy)
    assert container["image"] == f"{REGISTRY}/iris-classifier@{DIGEST}"
    assert {item["name"]: item["value"] for item in container["env"]}["IRIS_SHADOW"] == "v1.1.0"
    # a stage name resolves to the version it holds
    assert "with v1.1.0 as its shadow" in copy.make("deploy-shadow", "VERSION=staging", "DRY_RUN=1").stdout


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["VERSION=1.0.0"], "v1.0.0 is what production holds"),
        (["VERSION=1.2.0"], "iris-classifier@v1.2.0 is not a registered version"),
        ([], "name the version to shadow"),
        # before a build of minutes: the deploy needs all three
        (["VERSION=1.1.0", "SIGN_KEY=k", "SIGN_PUBKEY=p"], "REGISTRY is empty"),
        (["VERSION=1.1.0", f"REGISTRY={REGISTRY}", "SIGN_PUBKEY=p"], "SIGN_KEY is empty"),
    ],
)
def test_refused_before_anything_is_built(staged_copy, arguments, said):
    copy, _ = staged_copy
    result = copy.make("deploy-shadow", *arguments, check=False)
    assert result.returncode != 0 and f"deploy-shadow: refused: {said}" in result.stderr, result.stderr
    assert not (copy.path / "build" / "shadow-source").exists()
    assert not (copy.path / "build" / "k8s" / "production.yaml").exists()
    assert len(copy.git("worktree", "list").splitlines()) == 1  # no worktree of production's commit was made
