"""Signatures and the policy, on small images in the real registry: a signed push verifies by tag and by digest;
unsigned, re-tagged, replaced, wrongly signed, damaged, swapped and tampered images are refused with the reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from iris_classifier.project.paths import ROOT
from iris_classifier.registry import signing
from iris_classifier.registry.published import ImageReference, PublishedImage
from ops import publish
from tests.publish.conftest import skopeo_inspect

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("publish")]


def ref(registry, name: str) -> ImageReference:
    return ImageReference.parse(f"{registry.address}/{name}")


def push(image: str, to: ImageReference, tmp_path: Path, sigstore: Path, key: Path | None) -> PublishedImage:
    return publish.publish(image, to, record=tmp_path / "image.json", sign_key=key, sigstore=sigstore, sbom=False)


def refusal(reference, keys, sigstore, pubkey=None) -> str:
    with pytest.raises(publish.Refused) as refused:
        publish.verify(reference, pubkey or keys.pubkey, sigstore=sigstore)
    return refused.value.reason


def test_a_signed_push_records_its_digest_and_verifies_by_tag_and_by_digest(
    registry, keys, small_images, sigstore, tmp_path
):
    to = ref(registry, "iris-classifier:signed-1")
    done = push(small_images["one"], to, tmp_path, sigstore, keys.key)
    assert PublishedImage.load(tmp_path / "image.json") == done
    assert done.signed_by == keys.fingerprint and done.sbom is None
    assert done.commit == "0123456789abcdefone" and done.registry_version == "unreleased"
    inspected = json.loads(skopeo_inspect(str(to)).stdout)
    assert inspected["Digest"] == done.digest
    assert signing.signature_path(sigstore, to, done.digest).exists()
    assert publish.verify(to, keys.pubkey, sigstore=sigstore) == done.digest
    assert publish.verify(to.pinned(done.digest), keys.pubkey, sigstore=sigstore) == done.digest


def test_the_same_image_published_under_two_tags_keeps_both_signatures(
    registry, keys, small_images, sigstore, tmp_path
):
    first, second = ref(registry, "iris-classifier:twice-1"), ref(registry, "iris-classifier:twice-2")
    push(small_images["one"], first, tmp_path, sigstore, keys.key)
    done = push(small_images["one"], second, tmp_path, sigstore, keys.key)
    folder = signing.signature_path(sigstore, second, done.digest).parent
    assert len(list(folder.glob("signature-*"))) >= 2
    assert publish.verify(first, keys.pubkey, sigstore=sigstore) == done.digest
    assert publish.verify(second, keys.pubkey, sigstore=sigstore) == done.digest


def test_an_unsigned_image_is_refused(registry, keys, small_images, sigstore, tmp_path):
    to = ref(registry, "iris-classifier:unsigned")
    push(small_images["two"], to, tmp_path, sigstore, None)
    assert refusal(to, keys, sigstore).startswith("unsigned")


def test_a_retagged_image_is_refused(registry, keys, small_images, sigstore, tmp_path):
    """A signed v1 copied to another tag: same digest, same signature, but it names v1."""
    signed, moved = ref(registry, "iris-classifier:v1.0.0"), ref(registry, "iris-classifier:v9.9.9")
    push(small_images["one"], signed, tmp_path, sigstore, keys.key)
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{signed}", f"docker://{moved}"], check=True, capture_output=True)  # fmt: skip
    assert refusal(moved, keys, sigstore) == f"re-tagged: the signature is for {signed}, not {moved}"


def test_an_image_replaced_under_a_signed_tag_is_refused(registry, keys, small_images, sigstore, tmp_path):
    to = ref(registry, "iris-classifier:replaced")
    signed = push(small_images["one"], to, tmp_path, sigstore, keys.key)
    replaced = push(small_images["two"], to, tmp_path, sigstore, None)  # other content, same tag, no new signature
    assert replaced.digest != signed.digest
    assert refusal(to, keys, sigstore).startswith("unsigned")
    # By digest, the signed image is still there and still verifies.
    assert publish.verify(to.pinned(signed.digest), keys.pubkey, sigstore=sigstore) == signed.digest


def test_an_image_signed_by_another_key_is_refused(registry, keys, small_images, sigstore, tmp_path):
    to = ref(registry, "iris-classifier:other-signer")
    push(small_images["two"], to, tmp_path, sigstore, keys.other_key)
    assert (
        refusal(to, keys, sigstore)
        == f"signed by another key ({keys.other_fingerprint}), not by {keys.pubkey} ({keys.fingerprint})"
    )


def test_a_damaged_signature_is_refused(registry, keys, small_images, sigstore, tmp_path):
    to = ref(registry, "iris-classifier:damaged-signature")
    done = push(small_images["one"], to, tmp_path, sigstore, keys.key)
    signature = signing.signature_path(sigstore, to, done.digest)
    signature.write_bytes(signature.read_bytes()[: signature.stat().st_size // 2])  # cut in half
    assert refusal(to, keys, sigstore).startswith("tampered: the signature does not verify")


def test_a_signature_swapped_in_from_another_image_is_refused(registry, keys, small_images, sigstore, tmp_path):
    """A genuine signature by the right key, but of another manifest, put in this image's place."""
    target, other = ref(registry, "iris-classifier:swapped"), ref(registry, "iris-classifier:swapped-from")
    done = push(small_images["one"], target, tmp_path, sigstore, keys.key)
    donor = push(small_images["two"], other, tmp_path, sigstore, keys.key)
    genuine = signing.signature_path(sigstore, other, donor.digest).read_bytes()
    signing.signature_path(sigstore, target, done.digest).write_bytes(genuine)
    assert refusal(target, keys, sigstore).startswith("tampered: the signature is a valid one, but of another manifest")


def test_a_tampered_layer_in_the_registry_is_refused(registry, keys, small_images, sigstore, tmp_path):
    """The manifest and its signature are intact; a layer's bytes were changed in the registry's storage."""
    to = ref(registry, "tampered-layer/iris-classifier:v1")
    done = push(small_images["layer"], to, tmp_path, sigstore, keys.key)
    assert publish.verify(to, keys.pubkey, sigstore=sigstore) == done.digest
    manifest = json.loads(skopeo_inspect(str(to), "--raw").stdout)
    layer = manifest["layers"][0]["digest"].removeprefix("sha256:")
    blob = registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert refusal(to, keys, sigstore).startswith("tampered: a layer's content")


def test_make_verify_image_exits_non_zero_and_says_why(registry, keys, small_images, sigstore, tmp_path):
    signed, unsigned = ref(registry, "iris-classifier:make-signed"), ref(registry, "iris-classifier:make-unsigned")
    push(small_images["one"], signed, tmp_path, sigstore, keys.key)
    push(small_images["two"], unsigned, tmp_path, sigstore, None)

    def verify(reference):
        return subprocess.run(
            ["make", "--no-print-directory", "verify-image", f"REF={reference}", f"SIGN_PUBKEY={keys.pubkey}",
             f"SIGSTORE={sigstore}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    accepted = verify(signed)
    assert accepted.returncode == 0, accepted.stderr
    assert f"verify-image: {signed} is signed by {keys.fingerprint}" in accepted.stdout
    refused = verify(unsigned)
    assert refused.returncode != 0
    assert f"verify-image: {unsigned} refused: unsigned" in refused.stderr
    assert f"policy: only {unsigned.repository} signed by {keys.fingerprint}" in refused.stderr
