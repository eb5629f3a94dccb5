"""Where `make publish-image` pushes a release: one REGISTRY for Publish and Deploy, IMAGE_REPOSITORY to override
(the push itself, its signature, SBOM and digest record: tests/publish)."""

from __future__ import annotations

import subprocess

import pytest

from iris_classifier.project.paths import ROOT
from ops.k8s import image_reference
from ops.registry import push_target


@pytest.fixture
def env(monkeypatch):
    for name in ("REGISTRY", "IMAGE_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_registry_means_no_push(env):
    assert push_target("v1.2.0") is None


def test_the_registry_prefixes_the_image_as_the_kubernetes_render_names_it(env):
    env.setenv("REGISTRY", "registry.example.com/ml/")
    assert push_target("v1.2.0") == "registry.example.com/ml/iris-classifier:v1.2.0"
    assert push_target("v1.2.0") == image_reference("v1.2.0", "registry.example.com/ml/")  # what Deploy renders


def test_a_whole_repository_name_wins_over_the_registry(env):
    env.setenv("REGISTRY", "registry.example.com/ml")
    env.setenv("IMAGE_REPOSITORY", "ghcr.io/team/iris")
    assert push_target("v1.2.0") == "ghcr.io/team/iris:v1.2.0"


def test_make_passes_the_registry_and_the_signing_key_to_publish(env):
    # make -n prints the recipe: REGISTRY and SIGN_KEY from the command line reach ops.registry's environment.
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "publish-image", "VERSION=1.2.0", "REGISTRY=registry.example.com/ml",
         "SIGN_KEY=/keys/release.asc"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'REGISTRY="registry.example.com/ml"' in result.stdout and "ops.registry publish" in result.stdout
    assert 'SIGN_KEY="/keys/release.asc"' in result.stdout
