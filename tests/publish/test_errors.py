"""A publish that cannot finish says why, naming REGISTRY, exits non-zero and leaves no record (no partial state)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from iris_classifier.project.paths import ROOT
from ops import image_registry, publish
from tests.publish.conftest import htpasswd_line, skopeo_inspect

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("publish")]


def push_cli(image: str, target: str, record, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.publish", "push", image, target, "--record", str(record), "--no-sbom", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_registry_down_is_a_clear_error_and_no_record(tools, small_images, tmp_path):
    down = f"127.0.0.1:{image_registry.free_port()}"  # nothing listens there
    record = tmp_path / "build" / "image.json"
    result = push_cli(small_images["one"], f"{down}/iris-classifier:v1", record)
    assert result.returncode == 1
    assert f"REGISTRY={down} does not answer at http://{down}/v2/" in result.stderr
    assert "Nothing was pushed or recorded" in result.stderr
    assert not record.exists() and not record.parent.exists()


def test_make_publish_image_refuses_an_unregistered_version_and_records_nothing(tools, tmp_path):
    """Through make, as Jenkins runs it: an unregistered version is refused before any push, nothing recorded."""
    record = tmp_path / "image.json"
    result = subprocess.run(
        ["make", "--no-print-directory", "publish-image", "VERSION=99.0.0", "REGISTRY=127.0.0.1:9",
         f"IMAGE_RECORD={record}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "iris-classifier@v99.0.0 does not exist" in result.stderr
    assert not record.exists()


@pytest.fixture(scope="module")
def guarded_registry(tools, tmp_path_factory):
    """A second registry that wants credentials (htpasswd, bcrypt): alice / right-password."""
    folder = tmp_path_factory.mktemp("guarded-registry")
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(htpasswd_line("alice", "right-password"))
    with image_registry.running(folder, htpasswd=htpasswd) as running:
        yield running


def test_wrong_credentials_are_a_clear_error_and_no_record(guarded_registry, small_images, tmp_path):
    record = tmp_path / "image.json"
    target = f"{guarded_registry.address}/iris-classifier:v1"
    wrong = push_cli(
        small_images["auth"], target, record, env={"REGISTRY_USER": "alice", "REGISTRY_PASSWORD": "s3cret-but-wrong"}
    )
    assert wrong.returncode == 1
    assert f"pushing {small_images['auth']} to REGISTRY={guarded_registry.address} failed: the registry refused the " \
           "credentials" in wrong.stderr  # fmt: skip
    assert "s3cret-but-wrong" not in wrong.stdout + wrong.stderr  # the password is never echoed
    assert not record.exists()
    assert "Nothing was recorded" in wrong.stderr
    right = push_cli(
        small_images["auth"], target, record, env={"REGISTRY_USER": "alice", "REGISTRY_PASSWORD": "right-password"}
    )
    assert right.returncode == 0, right.stderr
    assert record.exists()


def test_a_signing_key_that_is_not_a_private_key_stops_the_push(registry, keys, small_images, tmp_path):
    record = tmp_path / "image.json"
    result = push_cli(small_images["two"], f"{registry.address}/iris-classifier:bad-key", record,
                      "--sign-key", str(keys.pubkey))  # fmt: skip
    assert result.returncode == 1
    assert f"SIGN_KEY={keys.pubkey} holds no GPG private key" in result.stderr
    assert "Nothing was pushed" in result.stderr and not record.exists()
    assert skopeo_inspect(f"{registry.address}/iris-classifier:bad-key").returncode != 0  # nothing reached it


def test_a_failed_publish_leaves_an_earlier_record_as_it_was(tools, small_images, tmp_path):
    record = tmp_path / "image.json"
    record.write_text('{"earlier": "publish"}')
    down = f"127.0.0.1:{image_registry.free_port()}"
    with pytest.raises(publish.PublishFailed):
        publish.publish(
            small_images["one"], publish.target(f"{down}/iris-classifier:v2", what="publish"), record=record
        )
    assert record.read_text() == '{"earlier": "publish"}'
