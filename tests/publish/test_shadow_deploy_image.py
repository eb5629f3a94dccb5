"""`make deploy-shadow` for real, up to the cluster: on a copy with v1.0.0 in production and v1.1.0 staged, the
image is built at production's commit carrying v1.1.0's model, pushed to a real registry, signed, recorded, its
signature checked and production rendered by digest with IRIS_SHADOW; then kubectl finds no cluster (there is
none here: its kubeconfig names a closed loopback port), and the deploy says so, having applied nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from iris_classifier.project.processes import free_port
from iris_classifier.registry.published import PublishedImage
from ops import k8s

pytestmark = [pytest.mark.slow, pytest.mark.publish]  # make test-publish only: an image build of minutes


def kubeconfig_of_no_cluster(path, port: int):
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
        f"clusters: [{{name: none, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "contexts: [{name: none, context: {cluster: none, user: none}}]\nusers: [{name: none, user: {}}]\n"
    )
    return path


def test_the_shadow_image_is_built_at_production_commit_published_signed_and_rendered(
    production_copy,
    registry,
    keys,
    tmp_path,
):
    copy = production_copy
    production_commit = copy.git("rev-parse", "iris-classifier@v1.0.0^{commit}")
    copy.commit("a change after v1.0.0")
    copy.make("release", "VERSION=1.1.0")
    copy.make("promote", "VERSION=1.1.0", "STAGE=staging")
    record = tmp_path / "image.json"
    copy.env.update(
        KUBECONFIG=str(kubeconfig_of_no_cluster(tmp_path / "kubeconfig", free_port())),  # nothing listens there
        SIGSTORE=str(tmp_path / "sigstore"),
    )
    image = f"iris-classifier:{production_commit}-shadow-v1.1.0"
    try:
        result = copy.make(
            "deploy-shadow", "VERSION=1.1.0", f"REGISTRY={registry.address}", f"SIGN_KEY={keys.key}",
            f"SIGN_PUBKEY={keys.pubkey}", f"IMAGE_RECORD={record}", check=False,
        )  # fmt: skip
        said = result.stdout + result.stderr
        assert result.returncode != 0, said  # no cluster
        labels = json.loads(subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                                           text=True, check=True).stdout)[0]["Config"]["Labels"]  # fmt: skip
        # production's code and model, the staged version's model beside it
        assert labels["org.opencontainers.image.revision"] == production_commit
        assert labels["ai.iris.model.registry_version"] == "v1.0.0"
        assert labels["ai.iris.bento"] == f"iris_classifier:{production_commit}-shadow-v1.1.0"  # carries v1.1.0's model
        published = PublishedImage.load(record)
        assert published.tag == "v1.0.0-shadow-v1.1.0" and published.commit == production_commit
        assert "signed by" in said and published.digest in said
        container = k8s.find(k8s.documents(copy.path / "build" / "k8s" / "production.yaml"), "Deployment")
        (pod,) = container["spec"]["template"]["spec"]["containers"]
        assert pod["image"] == f"{registry.address}/iris-classifier@{published.digest}"
        assert {item["name"]: item["value"] for item in pod["env"]}["IRIS_SHADOW"] == "v1.1.0"
        assert (
            "+ kubectl apply" in said and "is the cluster reachable with this KUBECONFIG? Nothing was applied" in said
        )
        assert not (copy.path / "build" / "shadow-source").exists()  # the worktree is removed
    finally:
        subprocess.run(["docker", "rmi", "--force", image], capture_output=True)
