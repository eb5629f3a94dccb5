"""The pure parts of publishing (fast tier, no Docker): image references, the digest record, the signature policy
and signature store layout, the reasons a check gives, the SBOM's subject and versions, and the wiring in make."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from iris_classifier.project.paths import ROOT
from iris_classifier.registry import sbom, signing
from iris_classifier.registry.published import BadRecord, BadReference, ImageReference, PublishedImage, recorded

DIGEST = "sha256:" + "ab" * 32


def record(**changes) -> PublishedImage:
    fields = {
        "repository": "127.0.0.1:5000/iris-classifier",
        "tag": "v1.2.0",
        "digest": DIGEST,
        "commit": "0123abc",
        "registry_version": "v1.2.0",
        "source_image": "iris-classifier:0123abc",
        "image_id": "sha256:" + "cd" * 32,
        "pushed_at": "2026-12-01T00:00:00Z",
        "push_seconds": 12.5,
    }
    return PublishedImage(**{**fields, **changes})


LOCAL = "127.0.0.1:5000/iris-classifier"
REMOTE = "registry.example.com/ml/iris-classifier"


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest", "registry", "loopback"),
    [
        (f"{LOCAL}:v1.2.0", LOCAL, "v1.2.0", None, "127.0.0.1:5000", True),
        (f"localhost:5000/iris@{DIGEST}", "localhost:5000/iris", None, DIGEST, "localhost:5000", True),
        (f"{REMOTE}:v1@{DIGEST}", REMOTE, "v1", DIGEST, "registry.example.com", False),
        ("iris-classifier:0123abc", "iris-classifier", "0123abc", None, None, False),
        ("[::1]:5000/iris-classifier:v1", "[::1]:5000/iris-classifier", "v1", None, "[::1]:5000", True),
    ],
)
def test_image_references_parse_into_their_parts(text, repository, tag, digest, registry, loopback):
    reference = ImageReference.parse(text)
    assert (reference.repository, reference.tag, reference.digest) == (repository, tag, digest)
    assert (reference.registry, reference.loopback) == (registry, loopback)
    assert str(reference) == text


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("127.0.0.1:5000/Iris:v1", "lowercase"),
        ("127.0.0.1:5000/iris:v1@sha256:abc", "64 hex"),
        ("127.0.0.1:5000/iris:bad/tag!", "lowercase"),
        ("127.0.0.1:5000/iris:-v1", "tag"),
    ],
)
def test_a_bad_reference_says_which_part(text, complaint):
    with pytest.raises(BadReference, match=complaint):
        ImageReference.parse(text)


def test_the_record_round_trips_and_pins_by_digest(tmp_path):
    path = record(signed_by="ABCD" * 10).save(tmp_path / "build" / "image.json")
    loaded = PublishedImage.load(path)
    assert loaded == record(signed_by="ABCD" * 10)
    assert loaded.pinned == f"127.0.0.1:5000/iris-classifier@{DIGEST}"
    assert str(loaded.reference) == f"127.0.0.1:5000/iris-classifier:v1.2.0@{DIGEST}"
    assert [p.name for p in path.parent.iterdir()] == ["image.json"]  # written atomically: no temp file left


def test_recorded_finds_the_push_of_that_image_only(tmp_path):
    path = record().save(tmp_path / "image.json")
    assert recorded(path, ImageReference.parse("127.0.0.1:5000/iris-classifier:v1.2.0")) is not None
    assert recorded(path, ImageReference.parse(f"127.0.0.1:5000/iris-classifier@{DIGEST}")) is not None
    assert recorded(path, ImageReference.parse("127.0.0.1:5000/iris-classifier:v1.3.0")) is None
    assert recorded(path, ImageReference.parse("127.0.0.1:5001/iris-classifier:v1.2.0")) is None
    assert recorded(tmp_path / "absent.json", ImageReference.parse("127.0.0.1:5000/iris-classifier:v1.2.0")) is None


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"digest": "sha256:short"}, "digest 'sha256:short'"),
        ({"format": 2}, "format 2"),
        ({"extra": 1}, "unknown field"),
        ({"tag": "not a tag"}, "tag"),
    ],
)
def test_a_record_that_cannot_pin_a_deploy_is_refused(tmp_path, change, complaint):
    data = json.loads(record().to_json()) | change
    path = tmp_path / "image.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadRecord, match=re.escape(complaint)) as refused:
        PublishedImage.load(path)
    assert str(path) in str(refused.value)


def test_a_record_missing_fields_names_them(tmp_path):
    path = tmp_path / "image.json"
    path.write_text(json.dumps({"repository": "127.0.0.1:5000/iris-classifier", "tag": "v1"}))
    with pytest.raises(BadRecord, match="missing digest, commit"):
        PublishedImage.load(path)


def test_the_policy_requires_the_key_for_this_repository_and_rejects_everything_else(tmp_path):
    key = tmp_path / "release.pub.asc"
    policy = signing.policy("127.0.0.1:5000/iris-classifier", key)
    assert policy["default"] == [{"type": "reject"}]
    assert list(policy["transports"]) == ["docker"]
    (requirement,) = policy["transports"]["docker"]["127.0.0.1:5000/iris-classifier"]
    assert requirement == {
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyPath": str(key.resolve()),
        "signedIdentity": {"type": "matchRepoDigestOrExact"},
    }
    # The push accepts only this machine's Docker engine as its source.
    assert signing.publishing_policy()["transports"] == {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}


def test_the_signature_store_is_a_lookaside_per_registry(tmp_path):
    writable = signing.lookaside("127.0.0.1:5000", tmp_path, writable=True)
    assert writable == {
        "docker": {"127.0.0.1:5000": {"lookaside": tmp_path.as_uri(), "lookaside-staging": tmp_path.as_uri()}}
    }
    served = signing.lookaside("registry.example.com", "https://sigstore.example.com/iris", writable=False)
    assert served == {"docker": {"registry.example.com": {"lookaside": "https://sigstore.example.com/iris"}}}
    with pytest.raises(ValueError, match="directory"):
        signing.lookaside("registry.example.com", "https://sigstore.example.com", writable=True)
    # containers/image's layout: <repository path>@<algorithm>=<hex>/signature-N
    path = signing.signature_path(tmp_path, ImageReference.parse("127.0.0.1:5000/ml/iris-classifier:v1"), DIGEST, 2)
    assert path == tmp_path / f"ml/iris-classifier@sha256={'ab' * 32}" / "signature-2"


@pytest.mark.parametrize(
    ("skopeo_says", "reason"),
    [
        ("Source image rejected: A signature was required, but no signature exists", "unsigned"),
        ("Source image rejected: Signature for identity 127.0.0.1:5000/iris-classifier:v1 is not accepted",
         "re-tagged: the signature is for 127.0.0.1:5000/iris-classifier:v1, not REF"),
        ('Source image rejected: Invalid GPG signature: gpgme.Signature{Summary:128, Fingerprint:"E11E09BC850A9DA3631'
         '1D7AFF9A9ED98765B9E09", Status:gpgme.Error{err:0x9}, ...}', "signed by another key (E11E09BC850A9DA36311"),
        ('Source image rejected: Invalid GPG signature: gpgme.Signature{Summary:4, Fingerprint:"EC3782EE2EF13245", '
         "Status:gpgme.Error{err:0x7000008}}", "tampered: the signature does not verify"),
        ("Source image rejected: Unknown compression algorithm", "tampered: the signature does not verify"),
        ("Source image rejected: Unexpected GPG signature count 0", "tampered: the signature does not verify"),
        ("Source image rejected: No data", "tampered: the signature does not verify"),
        (f"Source image rejected: Signature for digest {DIGEST} does not match", "tampered: the signature is a valid"),
        ("writing blob: happened during read: Digest did not match, expected sha256:aa, got sha256:bb",
         "tampered: a layer's content"),
        ("reading manifest v9 in 127.0.0.1:5000/iris-classifier: manifest unknown", "no such image"),
        ("unauthorized: authentication required", "the registry refused the credentials"),
        ('pinging container registry 127.0.0.1:1: Get "http://127.0.0.1:1/v2/": dial tcp: connect: connection refused',
         "the registry does not answer"),
        ("something new", "the policy check failed"),
    ],
)  # fmt: skip
def test_each_refusal_has_a_plain_reason(skopeo_says, reason):
    found = signing.refusal(f'time="..." level=fatal msg="{skopeo_says}"', reference="REF", key="KEY")
    assert found.reason.startswith(reason), found
    assert found.advice


def test_pip_freeze_and_sbom_versions_compare_by_normalized_name():
    assert sbom.freeze_versions("PyYAML==6.0.2\n# comment\n\nsome_pkg @ file:///x.whl\nzope.interface==7\n") == {
        "pyyaml": "6.0.2",
        "some-pkg": "file:///x.whl",
        "zope-interface": "7",
    }
    with pytest.raises(ValueError, match="not a pinned"):
        sbom.freeze_versions("requests>=2\n")
    bom = {"components": [{"type": "library", "name": "PyYAML", "version": "6.0.2"},
                          {"type": "application", "name": "tool", "version": "1"}]}  # fmt: skip
    assert sbom.component_versions(bom) == {"pyyaml": "6.0.2"}


def test_the_sbom_names_the_pushed_image_by_digest_and_validates():
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    library = {"type": "library", "bom-ref": "numpy==2.0.0", "name": "numpy", "version": "2.0.0",
               "purl": "pkg:pypi/numpy@2.0.0"}  # fmt: skip
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": [library],
           "dependencies": [{"ref": "numpy==2.0.0"}]}  # fmt: skip
    pushed = ImageReference("127.0.0.1:5000/iris-classifier", "v1.2.0", DIGEST)
    described = sbom.describe_image(
        bom, image="iris-classifier:0123abc", image_id="sha256:" + "cd" * 32, published=pushed
    )
    subject = described["metadata"]["component"]
    assert subject["type"] == "container" and subject["name"] == "127.0.0.1:5000/iris-classifier"
    assert subject["purl"] == (
        f"pkg:oci/iris-classifier@sha256%3A{'ab' * 32}?repository_url=127.0.0.1:5000/iris-classifier&tag=v1.2.0"
    )
    assert described["dependencies"][0] == {"ref": subject["bom-ref"], "dependsOn": ["numpy==2.0.0"]}
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(described)) is None
    local = sbom.describe_image(bom, image="iris-classifier:0123abc", image_id="sha256:" + "cd" * 32)
    assert "purl" not in local["metadata"]["component"] and local["metadata"]["component"]["version"] == "0123abc"


def make_dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_wires_the_publishing_targets():
    publish = make_dry_run("publish-image", "VERSION=1.2.0", "REGISTRY=127.0.0.1:5000", "SIGN_KEY=/k.asc")
    assert 'SIGN_KEY="/k.asc"' in publish and 'REGISTRY="127.0.0.1:5000"' in publish
    assert "ops.registry publish" in publish
    verify = make_dry_run("verify-image", "REF=127.0.0.1:5000/iris-classifier:v1.2.0", "SIGN_PUBKEY=/k.pub")
    assert 'ops.publish verify "127.0.0.1:5000/iris-classifier:v1.2.0" --pubkey "/k.pub"' in verify
    deploy = make_dry_run(
        "k8s-deploy", "ENV=production", "VERSION=1.2.0", "REGISTRY=r.example.com", "SIGN_PUBKEY=/k.pub"
    )
    assert "--version 1.2.0" in deploy and "--registry r.example.com" in deploy and '--pubkey "/k.pub"' in deploy
    assert "ops.image_registry up" in make_dry_run("registry-up")
    assert "ops.image_registry down" in make_dry_run("registry-down")
    assert "ops.publish sbom" in make_dry_run("sbom")
    assert "pytest -p no:cacheprovider tests/publish" in make_dry_run("test-publish")
    assert {"registry-up", "registry-down", "sbom", "verify-image", "test-publish"} <= phony_targets()


def phony_targets() -> set[str]:
    """The targets make itself holds as .PHONY (its printed database: -p, nothing run: -q)."""
    database = subprocess.run(["make", "-pq", "--no-print-directory", "help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60).stdout  # fmt: skip
    (phony,) = [line for line in database.splitlines() if line.startswith(".PHONY:")]
    return set(phony.removeprefix(".PHONY:").split())


def test_ci_runs_the_publish_tests_after_the_container_tests_and_the_agent_gets_the_tools():
    steps = (ROOT / ".ci" / "run").read_text()
    assert steps.index("make test-image") < steps.index("make test-publish")
    listed = subprocess.run([ROOT / "ops" / "agent_setup.sh", "--packages"], capture_output=True, text=True, check=True)
    assert {"docker-registry", "skopeo", "gnupg"} <= set(listed.stdout.splitlines())
