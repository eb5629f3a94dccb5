"""Publish this project's image to an OCI registry, and check what a registry serves before anything deploys it.

python -m ops.publish push IMAGE TARGET [--sign-key FILE]   TARGET: registry/repository:tag
python -m ops.publish sbom [--image IMAGE] [--output build/sbom.cdx.json]
python -m ops.publish verify REF --pubkey FILE               REF: registry/repository:tag or ...@sha256:<digest>

A push is `skopeo copy docker-daemon:IMAGE docker://TARGET`, signed with the GPG key in SIGN_KEY when given (simple
signing: the signature goes to the signature store SIGSTORE, a "lookaside"); the manifest digest is read back and
must agree three ways (skopeo's digest file, `skopeo inspect`, the sha256 of the raw manifest); then the SBOM of the
image's Python environment; the record (build/image.json) is written last, so a failed publish leaves no record.
`make publish-image` (ops/registry.py) runs this for a registered version after its own checks.

A verification copies the image with a generated policy.json that accepts only this repository signed by the
given key (skopeo checks the signature against the manifest, and every layer against its digest).

Environment: REGISTRY_USER / REGISTRY_PASSWORD (else skopeo's own REGISTRY_AUTH_FILE or ~/.docker/config.json),
SIGSTORE (default ~/.local/share/containers/sigstore), SIGN_PASSPHRASE_FILE for a key with a passphrase.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import yaml

from iris_classifier.project.paths import ROOT
from iris_classifier.registry import sbom as sbom_format
from iris_classifier.registry import signing
from iris_classifier.registry.published import BadReference, ImageReference, PublishedImage, digest_of

RECORD = ROOT / "build" / "image.json"
SBOM_NAME = "sbom.cdx.json"  # next to the record
UNRELEASED = "unreleased"
VENV_BIN = Path(sys.executable).parent  # cyclonedx-py comes from the project's lock
INSTALL = "an admin installs it once: apt-get install -y skopeo gnupg (ops/agent_setup.sh does)"

# Run inside the image by its own interpreter: the metadata (*.dist-info) of every distribution in its
# environment, as a tar stream on stdout (a few MB; the packages' code stays in the image).
METADATA_TAR = r"""
import os, sys, sysconfig, tarfile
sites = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
    for site in sites:
        for entry in sorted(os.listdir(site)):
            if entry.endswith((".dist-info", ".egg-info")):
                tar.add(os.path.join(site, entry), arcname=entry)
"""


class PublishFailed(SystemExit):
    """A publish or a check failed; the message names what (REGISTRY, the key, the image) and what to do."""


class Refused(PublishFailed):
    """The signature policy refused an image: `reason` is the one-line why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def default_sigstore() -> Path:
    """Where signatures are kept unless SIGSTORE says otherwise: containers/image's own place for a user."""
    if configured := os.environ.get("SIGSTORE"):
        return Path(configured)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "containers" / "sigstore"


def program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise PublishFailed(f"publish: `{name}` is not installed; {INSTALL}")
    return found


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


# -- the local image ----------------------------------------------------------------------------------------


def local_image(image: str) -> dict:
    inspected = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
    if inspected.returncode != 0:
        raise PublishFailed(f"publish: no local image {image}; run `make image` at that commit")
    return json.loads(inspected.stdout)[0]


# -- the registry --------------------------------------------------------------------------------------------


def target(text: str, *, what: str) -> ImageReference:
    try:
        reference = ImageReference.parse(text)
    except BadReference as error:
        raise PublishFailed(f"{what}: {error}") from None
    if not reference.registry:
        raise PublishFailed(f"{what}: {text!r} names no registry (host[:port]/...); set REGISTRY")
    return reference


def check_registry(reference: ImageReference, *, what: str, registry: str | None = None) -> None:
    """Fail early, naming REGISTRY, when nothing answers at the registry's /v2/ (any HTTP answer will do)."""
    shown = registry or reference.registry
    url = f"{'http' if reference.loopback else 'https'}://{reference.registry}/v2/"
    try:
        requests.get(url, timeout=10)
    except requests.RequestException as error:
        cause = type(error).__name__ + (": connection refused" if "refused" in str(error).lower() else "")
        outcome = "Nothing was pushed or recorded." if what == "publish" else "Nothing was verified."
        raise PublishFailed(
            f"{what}: REGISTRY={shown} does not answer at {url} ({cause}); start it (make registry-up prints "
            f"REGISTRY=...) or fix REGISTRY. {outcome}"
        ) from None


@contextlib.contextmanager
def credentials(reference: ImageReference, work: Path) -> Iterator[Path | None]:
    """An auth file for skopeo from REGISTRY_USER/REGISTRY_PASSWORD (Jenkins' usernamePassword binding), else None."""
    user = os.environ.get("REGISTRY_USER")
    if not user:
        yield None
        return
    token = base64.b64encode(f"{user}:{os.environ.get('REGISTRY_PASSWORD', '')}".encode()).decode()
    path = work / "auth.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps({"auths": {reference.registry: {"auth": token}}}))
    yield path


def skopeo(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([program("skopeo"), *args], capture_output=True, text=True, env=env, timeout=timeout)


def tls(reference: ImageReference, flag: str) -> list[str]:
    """Plain HTTP for a registry on loopback only (skopeo's --*-tls-verify=false); TLS everywhere else."""
    return [f"--{flag}=false"] if reference.loopback else []


# -- GPG ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def gpg_home() -> Iterator[Path]:
    """A throwaway GnuPG home (never the user's keyring); its agent is stopped and the folder removed after."""
    home = Path(tempfile.mkdtemp(prefix="iris-gpg-"))  # short: the agent's socket path has a length limit
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [program("gpg"), "--homedir", str(home), "--batch", "--no-tty", *args], capture_output=True, text=True
    )


def fingerprints(colons: str, kind: str) -> list[str]:
    """Primary-key fingerprints from `gpg --with-colons` output (the fpr line that follows each `kind` line)."""
    found, after = [], False
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sec", "sub", "ssb"):
            after = fields[0] == kind
        elif fields[0] == "fpr" and after:
            found.append(fields[9])
            after = False
    return found


def import_signing_key(home: Path, key: Path, passphrase_file: Path | None) -> str:
    if not key.is_file():
        raise PublishFailed(f"publish: SIGN_KEY={key} is not a file")
    passphrase = ["--pinentry-mode", "loopback", "--passphrase-file", str(passphrase_file)] if passphrase_file else []
    imported = gpg(home, *passphrase, "--import", str(key))
    secret = fingerprints(gpg(home, "--list-secret-keys", "--with-colons").stdout, "sec")
    if imported.returncode != 0 or len(secret) != 1:
        problem = "holds no GPG private key" if not secret else f"holds {len(secret)} private keys, not one"
        raise PublishFailed(
            f"publish: SIGN_KEY={key} {problem} (expected one ASCII-armored `gpg --export-secret-keys --armor` "
            f"key){': ' + last_line(imported.stderr) if imported.returncode else ''}. Nothing was pushed."
        )
    return secret[0]


def key_fingerprint(public_key: Path, *, what: str) -> str:
    if not public_key.is_file():
        raise PublishFailed(f"{what}: SIGN_PUBKEY={public_key} is not a file")
    with gpg_home() as home:
        shown = gpg(home, "--with-colons", "--import-options", "show-only", "--import", str(public_key))
    keys = fingerprints(shown.stdout, "pub")
    if len(keys) != 1:
        raise PublishFailed(f"{what}: SIGN_PUBKEY={public_key} holds {len(keys)} GPG public keys, not one")
    return keys[0]


# -- signature store -------------------------------------------------------------------------------------------


def containers_config(work: Path, reference: ImageReference, sigstore: Path | str, *, writable: bool) -> Path:
    """A registries.d for this run only: the registry's signatures in `sigstore` (system settings untouched)."""
    directory = work / "registries.d"
    directory.mkdir()
    config = signing.lookaside(reference.registry, sigstore, writable=writable)
    (directory / "iris-classifier.yaml").write_text(yaml.safe_dump(config))
    return directory


def snapshot_signatures(sigstore: Path, reference: ImageReference) -> dict[Path, list[bytes]]:
    """The signatures already stored for this repository, per manifest folder."""
    found = {}
    for folder in sigstore.glob(f"{reference.path}@sha256=*"):
        files = sorted(folder.glob("signature-*"), key=lambda path: int(path.name.split("-")[1]))
        found[folder] = [path.read_bytes() for path in files]
    return found


def keep_older_signatures(before: dict[Path, list[bytes]], folder: Path) -> None:
    """A signed push writes its one signature as signature-1 and drops the rest: put back the older ones (the
    same image published under another tag earlier), numbered after it, so those tags still verify."""
    current = sorted(folder.glob("signature-*"), key=lambda path: int(path.name.split("-")[1]))
    kept = [path.read_bytes() for path in current]
    for old in before.get(folder, []):
        if old not in kept:
            kept.append(old)
            (folder / f"signature-{len(kept)}").write_bytes(old)


# -- push ----------------------------------------------------------------------------------------------------


def push(
    image: str,
    to: ImageReference,
    *,
    sign_key: Path | None = None,
    passphrase_file: Path | None = None,
    sigstore: Path | None = None,
    registry: str | None = None,
) -> tuple[str, float, str | None]:
    """skopeo copy docker-daemon:IMAGE docker://TO; returns (manifest digest, seconds, signing fingerprint)."""
    shown = registry or to.registry
    sigstore = Path(sigstore or default_sigstore())
    with tempfile.TemporaryDirectory(prefix="iris-publish-") as folder, contextlib.ExitStack() as stack:
        work = Path(folder)
        policy = work / "policy.json"
        policy.write_text(json.dumps(signing.publishing_policy()))
        command = ["--policy", str(policy), "--registries.d", str(containers_config(work, to, sigstore, writable=True))]
        command += ["copy", "--retry-times", "2", "--digestfile", str(work / "digest"), *tls(to, "dest-tls-verify")]
        auth = stack.enter_context(credentials(to, work))
        if auth:
            command += ["--dest-authfile", str(auth)]
        env, fingerprint, before = None, None, {}
        if sign_key:
            home = stack.enter_context(gpg_home())
            fingerprint = import_signing_key(home, Path(sign_key), passphrase_file)
            command += ["--sign-by", fingerprint]
            if passphrase_file:
                command += ["--sign-passphrase-file", str(passphrase_file)]
            env = {**os.environ, "GNUPGHOME": str(home)}
            sigstore.mkdir(parents=True, exist_ok=True)
            before = snapshot_signatures(sigstore, to)
        started = time.monotonic()
        copied = skopeo(*command, f"docker-daemon:{image}", f"docker://{to}", env=env)
        seconds = time.monotonic() - started
        if copied.returncode != 0:
            found = signing.refusal(copied.stderr, reference=str(to), key=str(sign_key))
            raise PublishFailed(
                f"publish: pushing {image} to REGISTRY={shown} failed: {found.reason}; {found.advice}. "
                f"Nothing was recorded.\n  skopeo: {last_line(copied.stderr)}"
            )
        digest = (work / "digest").read_text().strip()
        if sign_key:
            keep_older_signatures(before, signing.signature_path(sigstore, to, digest).parent)
        return digest, seconds, fingerprint


def read_back(reference: ImageReference, digest: str, *, registry: str | None = None) -> None:
    """The registry must answer the pushed digest: `skopeo inspect`'s Digest and the sha256 of the raw manifest."""
    with tempfile.TemporaryDirectory(prefix="iris-inspect-") as folder, credentials(reference, Path(folder)) as auth:
        common = [*tls(reference, "tls-verify"), *(["--authfile", str(auth)] if auth else [])]
        address = f"docker://{reference}"
        raw = subprocess.run([program("skopeo"), "inspect", "--raw", *common, address], capture_output=True)
        inspected = skopeo("inspect", *common, address)
    if raw.returncode != 0 or inspected.returncode != 0:
        error = last_line(raw.stderr.decode(errors="replace") if raw.returncode else inspected.stderr)
        raise PublishFailed(f"publish: `skopeo inspect` of {reference} at REGISTRY={registry} failed: {error}")
    answered = {"push (skopeo --digestfile)": digest, "skopeo inspect": json.loads(inspected.stdout)["Digest"]}
    answered["sha256 of the raw manifest"] = digest_of(raw.stdout)
    if len(set(answered.values())) != 1:
        raise PublishFailed(f"publish: the registry's digests of {reference} disagree: {answered}; nothing recorded")


def labels(reference: ImageReference) -> dict[str, str]:
    """The image's labels as the registry serves its config (`skopeo inspect`); {} when it cannot be read."""
    with tempfile.TemporaryDirectory(prefix="iris-inspect-") as folder, credentials(reference, Path(folder)) as auth:
        common = [*tls(reference, "tls-verify"), *(["--authfile", str(auth)] if auth else [])]
        inspected = skopeo("inspect", *common, f"docker://{reference}")
    return (json.loads(inspected.stdout).get("Labels") or {}) if inspected.returncode == 0 else {}


# -- SBOM ----------------------------------------------------------------------------------------------------


def image_python(config: dict) -> str:
    """The image's own interpreter: its VIRTUAL_ENV's (what the service runs), else `python` on its PATH."""
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    return f"{env['VIRTUAL_ENV']}/bin/python" if env.get("VIRTUAL_ENV") else "python"


def copy_metadata(image: str, python: str, site: Path) -> None:
    """Every *.dist-info of the image's environment into `site`, streamed out of a throwaway container."""
    run = ["docker", "run", "--rm", "--network", "none", "--entrypoint", python, image, "-c", METADATA_TAR]
    with subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as container:
        untar = subprocess.run(["tar", "-C", str(site), "-x"], stdin=container.stdout, capture_output=True)
        container.stdout.close()
        errors = container.stderr.read().decode(errors="replace")
    if container.returncode != 0 or untar.returncode != 0:
        raise PublishFailed(f"sbom: reading {image}'s package metadata failed: {errors or untar.stderr.decode()}")


def validate_sbom(bom: dict) -> None:
    """CycloneDX's own JSON schema (strict), as cyclonedx-python-lib ships it."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.from_version(sbom_format.SPEC_VERSION)).validate_str(json.dumps(bom))
    if error:
        raise PublishFailed(f"sbom: the SBOM does not validate against CycloneDX {sbom_format.SPEC_VERSION}: {error}")


def make_sbom(image: str, output: Path, *, published: ImageReference | None = None, validate: bool = True) -> dict:
    """CycloneDX JSON of the image's Python environment (cyclonedx-py over the image's own package metadata).

    The metadata is copied out of the image into an empty virtualenv on this machine, and cyclonedx-py reads
    that environment: the packages, versions, licences and dependencies are the image's, not the dev venv's.
    """
    config = local_image(image)
    with tempfile.TemporaryDirectory(prefix="iris-sbom-") as folder:
        venv = Path(folder) / "image-env"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = Path(
            subprocess.run(
                [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        )  # fmt: skip
        copy_metadata(image, image_python(config["Config"]), site)
        made = subprocess.run(
            [str(VENV_BIN / "cyclonedx-py"), "environment", "--no-validate", "--sv", sbom_format.SPEC_VERSION,
             "--of", "JSON", "-o", str(Path(folder) / "bom.json"), str(venv)],
            capture_output=True, text=True,
        )  # fmt: skip
        if made.returncode != 0:
            raise PublishFailed(f"sbom: cyclonedx-py failed: {made.stderr.strip()[-2000:]}")
        bom = json.loads((Path(folder) / "bom.json").read_text())
    bom = sbom_format.describe_image(bom, image=image, image_id=config["Id"], published=published)
    if validate:
        validate_sbom(bom)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    with os.fdopen(handle, "w") as out:
        json.dump(bom, out, indent=2)
    os.replace(temporary, output)
    return bom


# -- publish: push, read back, SBOM, record ------------------------------------------------------------------------


def publish(
    image: str,
    to: ImageReference,
    *,
    record: Path = RECORD,
    sign_key: Path | None = None,
    passphrase_file: Path | None = None,
    sigstore: Path | None = None,
    registry: str | None = None,
    sbom: bool = True,
) -> PublishedImage:
    """Push `image` to `to`, check the digest, write the SBOM and then the record. Nothing is recorded on failure."""
    shown = registry or to.registry
    if not to.tag or to.digest:
        raise PublishFailed(f"publish: push to a tag (repository:tag), not {to}")
    config = local_image(image)
    labels = config["Config"].get("Labels") or {}
    check_registry(to, what="publish", registry=shown)
    sigstore = Path(sigstore or default_sigstore())
    digest, seconds, fingerprint = push(
        image, to, sign_key=sign_key, passphrase_file=passphrase_file, sigstore=sigstore, registry=shown
    )
    read_back(to, digest, registry=shown)
    signature = None
    if fingerprint:
        stored = signing.signature_path(sigstore, to, digest)
        if not stored.exists():
            raise PublishFailed(f"publish: skopeo signed {to} but no signature is in {stored.parent}; nothing recorded")
        signature = str(stored.parent)
    sbom_path, bom = record.parent / SBOM_NAME, None
    if sbom:
        bom = make_sbom(image, sbom_path, published=ImageReference(to.repository, to.tag, digest))
    published = PublishedImage(
        repository=to.repository,
        tag=to.tag,
        digest=digest,
        commit=labels.get("org.opencontainers.image.revision", "unknown"),
        registry_version=labels.get("ai.iris.model.registry_version", UNRELEASED),
        source_image=image,
        image_id=config["Id"],
        pushed_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        push_seconds=round(seconds, 1),
        sbom=SBOM_NAME if bom else None,
        sbom_sha256=hashlib.sha256(sbom_path.read_bytes()).hexdigest() if bom else None,
        sbom_components=len(bom["components"]) if bom else None,
        signed_by=fingerprint,
        signature=signature,
    )
    published.save(record)
    return published


# -- verify ---------------------------------------------------------------------------------------------------


def verify(
    reference: ImageReference, public_key: Path, *, sigstore: Path | str | None = None, what: str = "verify-image"
) -> str:
    """Copy `reference` under a policy that requires `public_key`'s signature for its repository; its digest.

    skopeo checks the signature (the key, and the signed name against the name asked for), then every blob
    against its digest while copying to a throwaway folder. Raises Refused, with the reason, otherwise.
    """
    fingerprint = key_fingerprint(public_key, what=what)
    check_registry(reference, what=what)
    store = sigstore or default_sigstore()
    with tempfile.TemporaryDirectory(prefix="iris-verify-") as folder:
        work = Path(folder)
        policy = work / "policy.json"
        policy.write_text(json.dumps(signing.policy(reference.repository, public_key), indent=2))
        registries = containers_config(work, reference, store, writable=False)
        with credentials(reference, work) as auth:
            copied = skopeo(
                "--policy", str(policy), "--registries.d", str(registries), "copy", "--quiet",
                *tls(reference, "src-tls-verify"), *(["--src-authfile", str(auth)] if auth else []),
                f"docker://{reference}", f"dir:{work / 'image'}",
            )  # fmt: skip
        if copied.returncode != 0:
            found = signing.refusal(copied.stderr, reference=str(reference), key=f"{public_key} ({fingerprint})")
            raise Refused(
                f"{what}: {reference} refused: {found.reason}.\n  {found.advice}.\n"
                f"  policy: only {reference.repository} signed by {fingerprint} (signedBy, {public_key}); "
                f"signatures read from {signing.store_url(store)}\n  skopeo: {last_line(copied.stderr)}",
                found.reason,
            )
        digest = digest_of((work / "image" / "manifest.json").read_bytes())
    if reference.digest and digest != reference.digest:
        raise Refused(f"{what}: {reference} answered digest {digest}", "tampered: another manifest")
    return digest


# -- command line ---------------------------------------------------------------------------------------------


def optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pushing = commands.add_parser("push", help="push, read back the digest, SBOM, record")
    pushing.add_argument("image", help="local image, e.g. iris-classifier:<commit>")
    pushing.add_argument("target", help="registry/repository:tag")
    pushing.add_argument("--sign-key", default=os.environ.get("SIGN_KEY") or None)
    pushing.add_argument("--record", type=Path, default=Path(os.environ.get("IMAGE_RECORD") or RECORD))
    pushing.add_argument("--no-sbom", action="store_true", help="skip the SBOM (an image without Python)")
    making = commands.add_parser("sbom", help="CycloneDX JSON of an image's Python environment")
    making.add_argument("--image", default=None, help="default: this commit's image")
    making.add_argument("--output", type=Path, default=None, help="default: sbom.cdx.json next to the record")
    checking = commands.add_parser("verify", help="check a published image's signature against a policy")
    checking.add_argument("reference", help="registry/repository:tag or registry/repository@sha256:...")
    checking.add_argument("--pubkey", default=os.environ.get("SIGN_PUBKEY") or None)
    args = parser.parse_args(argv)
    passphrase = optional_path(os.environ.get("SIGN_PASSPHRASE_FILE"))

    if args.command == "push":
        to = target(args.target, what="publish")
        done = publish(
            args.image, to, record=args.record, sign_key=optional_path(args.sign_key), passphrase_file=passphrase,
            sbom=not args.no_sbom,
        )  # fmt: skip
        print(f"publish: {done.source_image} -> {done.reference} in {done.push_seconds:.0f} s; record {args.record}")
    elif args.command == "sbom":
        from ops.image import image_tag

        image = args.image or image_tag()
        record_path = Path(os.environ.get("IMAGE_RECORD") or RECORD)
        output = args.output or record_path.parent / SBOM_NAME
        published = None
        if record_path.exists():
            record = PublishedImage.load(record_path)
            if record.image_id == local_image(image)["Id"]:
                published = record.reference
        bom = make_sbom(image, output, published=published)
        subject = published or image
        print(f"sbom: {output} (CycloneDX {bom['specVersion']}, {len(bom['components'])} packages of {subject})")
    else:
        if not args.pubkey:
            raise PublishFailed("verify-image: set SIGN_PUBKEY=<ASCII-armored GPG public key file>")
        reference = target(args.reference, what="verify-image")
        digest = verify(reference, Path(args.pubkey))
        print(f"verify-image: {reference} is signed by {key_fingerprint(Path(args.pubkey), what='verify-image')}; "
              f"manifest {digest}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
