"""A Bento built from a released commit names its registry version in /model; an unreleased one says why not."""

from __future__ import annotations

import json

import pytest
import requests

from iris_classifier.harness.servers import Server
from tests.conftest import run


def bento_labels(copy, tag: str) -> dict[str, str]:
    return json.loads(run(["bentoml", "get", tag, "-o", "json"], cwd=copy.path, env=copy.env).stdout)["labels"]


@pytest.mark.slow
def test_bento_of_a_released_commit_serves_its_registry_version(registry_copy, artifacts_dir):
    copy = registry_copy
    commit = copy.git("rev-parse", "HEAD")
    tag = f"iris_classifier:{commit}"

    copy.make("bento")
    labels = bento_labels(copy, tag)
    assert labels["registry_version"] == "unreleased"
    assert labels["registry_ref"] == f"no iris-classifier@v* tag on commit {commit[:12]}"

    copy.make("release", "VERSION=1.0.0")
    built = copy.make("bento").stdout  # released after its Bento was built: built again, naming the version
    assert f"bento: built {tag} (registry: iris-classifier@v1.0.0)" in built
    assert bento_labels(copy, tag)["registry_version"] == "v1.0.0"

    server = Server(tag, env={"BENTOML_HOME": copy.env["BENTOML_HOME"]}, log_path=artifacts_dir / "serve-release.log")
    server.start()
    try:
        card = requests.get(f"{server.url}/model", timeout=10).json()
    finally:
        server.stop()
    assert card["registry_version"] == "v1.0.0"
    assert card["registry"] == "iris-classifier@v1.0.0"
    assert card["bento_commit"] == commit


def test_source_served_model_card_says_unreleased(server):
    card = requests.get(f"{server.url}/model", timeout=10).json()
    assert card["registry_version"] is None
    assert card["registry"] == "unreleased: served from the source tree, not a built Bento"
