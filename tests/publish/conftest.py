"""A real registry (Distribution on loopback), throwaway GPG keys, small images, and this commit's image published.

Everything is made in temp folders and removed after: the registry stops by its pid, the keys live in a temp
GnuPG home (never the user's keyring), the images and containers have names of this process's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from iris_classifier.registry.published import ImageReference, PublishedImage
from ops import image_registry, k8s, publish
from tests.registry.conftest import (  # noqa: F401 (the registry copies, for test_shadow_deploy_image.py)
    pipeline_outputs,
    production_copy,
    production_project,
    registry_project,
)

TOOLS = {"docker-registry": "docker-registry", "skopeo": "skopeo", "gpg": "gnupg"}
UNIQUE = f"{os.getpid()}"


def missing_tools() -> list[str]:
    found = [name for name in TOOLS if shutil.which(name) or Path(f"/usr/bin/{name}").exists()]
    return [TOOLS[name] for name in TOOLS if name not in found]


@pytest.fixture(scope="session")
def tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: an admin runs `apt-get install -y {' '.join(missing)}` (agent_setup)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers (make docker-engine)")


@pytest.fixture(scope="session")
def registry(tools, tmp_path_factory) -> image_registry.Registry:
    """Distribution's registry on a free loopback port, storage in a temp folder; stopped by its pid after."""
    with image_registry.running(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def sigstore(tmp_path) -> Path:
    """A signature store of the test's own: what one test signs never answers for another's image."""
    return tmp_path / "sigstore"


@pytest.fixture(scope="session")
def session_sigstore(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sigstore")


@dataclass
class Keys:
    key: Path  # ASCII-armored private key: what SIGN_KEY (a Jenkins file credential) holds
    pubkey: Path  # its public half: SIGN_PUBKEY
    fingerprint: str
    other_key: Path  # a second signer, not trusted by the policy
    other_pubkey: Path
    other_fingerprint: str


def generate_key(home: Path, name: str, out: Path) -> tuple[Path, Path, str]:
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", name, "ed25519", "sign", "never"], check=True,
                   capture_output=True)  # fmt: skip
    listed = subprocess.run([*gpg, "--with-colons", "--list-secret-keys", name], check=True, capture_output=True)
    fingerprint = publish.fingerprints(listed.stdout.decode(), "sec")[0]
    key, pubkey = out / f"{fingerprint[-8:]}.key.asc", out / f"{fingerprint[-8:]}.pub.asc"
    key.write_bytes(subprocess.run([*gpg, "--armor", "--export-secret-keys", fingerprint], check=True,
                                   capture_output=True).stdout)  # fmt: skip
    pubkey.write_bytes(
        subprocess.run([*gpg, "--armor", "--export", fingerprint], check=True, capture_output=True).stdout
    )
    return key, pubkey, fingerprint


@pytest.fixture(scope="session")
def keys(tools, tmp_path_factory) -> Keys:
    """Two throwaway ed25519 signing keys, made in a temp GnuPG home that is removed (agent stopped) after."""
    out = tmp_path_factory.mktemp("keys")
    home = Path(tempfile.mkdtemp(prefix="iris-gpg-test-"))  # short path: gpg-agent's socket
    try:
        signer = generate_key(home, "Iris release signer (test) <release@iris.invalid>", out)
        other = generate_key(home, "Someone else (test) <other@iris.invalid>", out)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return Keys(*signer, *other)


@dataclass
class SmallImages:
    """Images of one small file each (FROM scratch): real pushes and signatures in well under a second."""

    names: dict[str, str]

    def __getitem__(self, variant: str) -> str:
        return self.names[variant]


@pytest.fixture(scope="session")
def small_images(tools, tmp_path_factory) -> SmallImages:
    names = {}
    for variant in ("one", "two", "layer", "auth"):  # "layer" and "auth": blobs no other test pushes
        context = tmp_path_factory.mktemp(f"image-{variant}")
        (context / "content.txt").write_text(f"{variant} {time.time()}\n")
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY content.txt /\n"
            f"LABEL org.opencontainers.image.revision=0123456789abcdef{variant}\n"
            "LABEL ai.iris.model.registry_version=unreleased\n"
        )
        name = f"iris-publish-test-{UNIQUE}:{variant}"
        subprocess.run(["docker", "build", "-q", "-t", name, str(context)], check=True, capture_output=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"})  # fmt: skip
        names[variant] = name
    yield SmallImages(names)
    subprocess.run(["docker", "rmi", "--force", *names.values()], capture_output=True)


@pytest.fixture(scope="session")
def commit_image(tools) -> str:
    """This commit's image (make image), as `make k8s-render` names it; skip when it has not been built."""
    from ops.image import image_tag

    image = image_tag()
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.skip(f"no image {image}: run `make image` (CI runs these after it: make test-publish)")
    return image


@dataclass
class Published:
    record: PublishedImage
    record_path: Path
    target: ImageReference
    sigstore: Path
    seconds: float  # the whole publish: push, read back, SBOM, record


@pytest.fixture(scope="session")
def published_commit_image(commit_image, registry, keys, session_sigstore, tmp_path_factory) -> Published:
    """This commit's image pushed to the registry as `make k8s-render REGISTRY=...` names it, signed, with its SBOM
    and digest record in a temp build/ folder (the same publish() that `make publish-image` runs for a release)."""
    tag = commit_image.rsplit(":", 1)[1]
    target = ImageReference.parse(k8s.image_reference(tag, registry.address))
    record_path = tmp_path_factory.mktemp("build") / "image.json"
    started = time.monotonic()
    record = publish.publish(commit_image, target, record=record_path, sign_key=keys.key, sigstore=session_sigstore)
    return Published(record, record_path, target, session_sigstore, time.monotonic() - started)


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (what Distribution's htpasswd auth reads), from the C library's crypt(3)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python 3.11 still has it; libxcrypt does bcrypt

    salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)  # cost 4: the registry checks it on every request
    return f"{user}:{crypt.crypt(password, salt)}\n"


def skopeo_inspect(reference: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{reference}"],
                          capture_output=True)  # fmt: skip
