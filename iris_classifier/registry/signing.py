"""What a deploy accepts: the signature policy (containers-policy.json) for the image's repository, where the
signatures live (a registries.d lookaside), and a plain reason for each way a check can refuse an image.

The signatures are containers/image "simple signing" (GPG) signatures, made by `skopeo copy --sign-by` and
checked by skopeo (or CRI-O, podman) with the policy written here. Pure logic: running gpg and skopeo is
operations, in ops/publish.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from iris_classifier.registry.published import ImageReference


def policy(repository: str, public_key: Path) -> dict:
    """Reject everything except `repository` signed by the key in `public_key` (an ASCII-armored GPG key file).

    The signed identity is checked as skopeo does by default (matchRepoDigestOrExact): a tag is accepted only
    with a signature made for exactly that tag, a digest with any signature of this repository for it.
    """
    return {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                repository: [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": str(Path(public_key).resolve()),
                        "signedIdentity": {"type": "matchRepoDigestOrExact"},
                    }
                ]
            }
        },
    }


def publishing_policy() -> dict:
    """For the push itself: the source is this machine's own Docker engine (the image `make image` built)."""
    accept = [{"type": "insecureAcceptAnything"}]
    return {"default": [{"type": "reject"}], "transports": {"docker-daemon": {"": accept}}}


def store_url(store: str | Path) -> str:
    """A signature store as containers/image names it: a URL (file://, http(s)://) or a directory."""
    text = str(store)
    if urlparse(text).scheme in ("file", "http", "https"):
        return text
    return Path(text).resolve().as_uri()


def lookaside(registry: str, store: str | Path, *, writable: bool) -> dict:
    """registries.d content: `registry`'s signatures are read from `store` (and written there when writable)."""
    url = store_url(store)
    entry = {"lookaside": url}
    if writable:
        if not url.startswith("file://"):
            raise ValueError(f"signatures are written to a directory (file://), not {url}")
        entry["lookaside-staging"] = url
    return {"docker": {registry: entry}}


def signature_path(store: Path, reference: ImageReference, digest: str, index: int = 1) -> Path:
    """Where containers/image keeps signature number `index` of a manifest in a file:// signature store."""
    algorithm, _, hexdigest = digest.partition(":")
    return Path(store) / f"{reference.path}@{algorithm}={hexdigest}" / f"signature-{index}"


@dataclass(frozen=True)
class Refusal:
    """Why a signature check refused an image: one short reason and what to do about it."""

    reason: str
    advice: str


def refusal(message: str, *, reference: str, key: str) -> Refusal:
    """Turn skopeo's error into the reason a person needs (the raw message is shown with it)."""
    identity = re.search(r"Signature for identity (\S+) is not accepted", message)
    signer = re.search(r'Fingerprint:\\?"([0-9A-F]{16,40})\\?"', message)
    checks: list[tuple[bool, Refusal]] = [
        (
            "no signature exists" in message,
            Refusal(
                f"unsigned: no signature of {reference}'s manifest in the signature store",
                "publish it with SIGN_KEY (make publish-image ... SIGN_KEY=<file>); if it was, the image under "
                "this name was replaced after signing, or SIGSTORE points at another signature store",
            ),
        ),
        (
            identity is not None,
            Refusal(
                f"re-tagged: the signature is for {identity and identity.group(1)}, not {reference}",
                "deploy the name that was signed, or publish (and sign) this one",
            ),
        ),
        (
            "Invalid GPG signature" in message and "err:0x9}" in message,  # GPG_ERR_NO_PUBKEY: another signer
            Refusal(
                f"signed by another key ({signer and signer.group(1)}), not by {key}",
                "check SIGN_PUBKEY is the public half of the key Publish signs with",
            ),
        ),
        (
            "Signature by key" in message and "is not accepted" in message,
            Refusal(f"signed by another key, not by {key}", "check SIGN_PUBKEY"),
        ),
        (
            "Digest did not match" in message or "digest mismatch" in message.lower(),
            Refusal(
                "tampered: a layer's content does not match the digest the signed manifest names",
                "the registry's copy was altered after the push: republish from a trusted build",
            ),
        ),
        (
            re.search(r"Signature for digest \S+ does not match", message) is not None,
            Refusal(
                "tampered: the signature is a valid one, but of another manifest (a signature file swapped in)",
                "the signature store was altered: republish from a trusted build; do not deploy this image",
            ),
        ),
        (
            "manifest unknown" in message or "name unknown" in message,
            Refusal(f"no such image: the registry has no {reference}", "publish it first (make publish-image)"),
        ),
        (
            "unauthorized" in message or "authentication required" in message or "denied" in message,
            Refusal(
                "the registry refused the credentials",
                "set REGISTRY_USER/REGISTRY_PASSWORD (Jenkins: the registry-credentials credential)",
            ),
        ),
        (
            "connection refused" in message or "no such host" in message or "i/o timeout" in message,
            Refusal("the registry does not answer", "check REGISTRY (make registry-up starts a local one)"),
        ),
    ]
    for matched, found in checks:
        if matched:
            return found
    if "Source image rejected" in message:  # the policy's other verdicts: the signature itself does not verify
        return Refusal(
            "tampered: the signature does not verify (the signature file or the signed manifest was altered)",
            "republish from a trusted build; do not deploy this image",
        )
    return Refusal("the policy check failed", "see skopeo's message below")
