"""`make k8s-deploy` checks the signature before it applies anything, and applies a render pinned by the verified
digest: against the real registry, with a stand-in kubectl that records its calls (no cluster runs here)."""

from __future__ import annotations

import json

import pytest

from iris_classifier.registry.published import ImageReference
from ops import image_registry, k8s, publish
from tests.deploy.test_jenkins_deploy import applied, deploy, fake_kubectl

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("publish")]


def published(registry, small_images, keys, sigstore, tmp_path, tag: str, *, signed: bool, variant: str = "one"):
    to = ImageReference.parse(k8s.image_reference(tag, registry.address))
    key = keys.key if signed else None
    return publish.publish(small_images[variant], to, record=tmp_path / "image.json", sign_key=key, sigstore=sigstore,
                           sbom=False)  # fmt: skip


def test_an_unsigned_image_is_refused_and_nothing_is_applied(registry, small_images, keys, sigstore, tmp_path):
    published(registry, small_images, keys, sigstore, tmp_path, "v3.0.0", signed=False)
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    env["SIGSTORE"] = str(sigstore)
    result = deploy(
        tmp_path, "--version", "3.0.0", "--registry", registry.address, "--pubkey", str(keys.pubkey), env=env
    )
    assert result.returncode != 0
    assert f"k8s-deploy: {registry.address}/iris-classifier:v3.0.0 refused: unsigned" in result.stderr
    assert "k8s-deploy: nothing was applied" in result.stderr
    assert applied(log) == []


def test_a_moved_tag_is_refused_even_when_signed(registry, small_images, keys, sigstore, tmp_path):
    """The record says what was published; the tag now answers another (signed) image: refuse, apply nothing."""
    first = published(registry, small_images, keys, sigstore, tmp_path, "v3.1.0", signed=True)
    record = json.loads((tmp_path / "image.json").read_text())
    published(registry, small_images, keys, sigstore, tmp_path, "v3.1.0", signed=True, variant="two")
    (tmp_path / "image.json").write_text(json.dumps(record))  # the first publish's record, as Jenkins archived it
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    env["SIGSTORE"] = str(sigstore)
    result = deploy(
        tmp_path, "--version", "3.1.0", "--registry", registry.address, "--pubkey", str(keys.pubkey), env=env
    )
    assert result.returncode != 0
    assert (
        f"but {tmp_path / 'image.json'} recorded {first.digest}" in result.stderr and "tag was moved" in result.stderr
    )
    assert applied(log) == []


def test_a_signed_image_is_applied_by_digest_and_a_failed_rollout_is_undone(registry, small_images, keys, sigstore,
                                                                           tmp_path):  # fmt: skip
    done = published(registry, small_images, keys, sigstore, tmp_path, "v3.2.0", signed=True)
    env, log = fake_kubectl(tmp_path, fail_rollout=True)
    env["SIGSTORE"] = str(sigstore)
    result = deploy(
        tmp_path, "--version", "3.2.0", "--registry", registry.address, "--pubkey", str(keys.pubkey), env=env
    )
    assert result.returncode != 0
    assert "failed and was rolled back" in result.stdout + result.stderr
    render = tmp_path / "k8s" / "staging.yaml"
    assert applied(log) == [
        f"apply -f {render}",
        "-n iris-staging rollout status deployment/iris-classifier --timeout=300s",
        "-n iris-staging rollout undo deployment/iris-classifier",
        "-n iris-staging rollout status deployment/iris-classifier --timeout=300s",
    ]
    (container,) = k8s.find(k8s.documents(render), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == done.pinned == f"{registry.address}/iris-classifier@{done.digest}"


def test_without_a_record_the_digest_comes_from_the_signature_check(registry, small_images, keys, sigstore, tmp_path):
    """A later build (a stage tag's) has no build/image.json: the digest is the one the signature vouches for."""
    done = published(registry, small_images, keys, sigstore, tmp_path, "v3.3.0", signed=True)
    (tmp_path / "image.json").unlink()
    env, _ = fake_kubectl(tmp_path, fail_rollout=True)
    env["SIGSTORE"] = str(sigstore)
    result = deploy(
        tmp_path, "--version", "3.3.0", "--registry", registry.address, "--pubkey", str(keys.pubkey), env=env
    )
    assert "failed and was rolled back" in result.stdout + result.stderr  # it got as far as the (stand-in) cluster
    (container,) = k8s.find(k8s.documents(tmp_path / "k8s" / "staging.yaml"), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == done.pinned


def test_a_registry_that_does_not_answer_is_named(tools, keys, tmp_path):
    env, log = fake_kubectl(tmp_path, fail_rollout=False)
    down = f"127.0.0.1:{image_registry.free_port()}"
    result = deploy(tmp_path, "--version", "1.2.0", "--registry", down, "--pubkey", str(keys.pubkey), env=env)
    assert result.returncode != 0 and f"k8s-deploy: REGISTRY={down} does not answer" in result.stderr
    assert applied(log) == []
