"""Where a release's image was published: image references (registry/repository:tag@digest) and the digest record.

`make publish-image` writes the record (build/image.json) after the registry has the image and its digest has
been read back; `make k8s-render` and `make k8s-deploy` read it to name the image by that digest. Pure logic:
the pushing itself (skopeo) is operations, in ops/publish.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI distribution spec's tag grammar
PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
LOOPBACK_HOSTS = ("localhost", "::1")
RECORD_FORMAT = 1  # bumped when a field changes meaning


class BadReference(ValueError):
    """An image reference that a registry would not accept; the message says which part and why."""


class BadRecord(ValueError):
    """A digest record that cannot be trusted to pin a deploy; the message names the file and the field."""


def digest_of(manifest: bytes) -> str:
    """A manifest's digest: what a registry answers as Docker-Content-Digest and what a deploy pins."""
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


@dataclass(frozen=True)
class ImageReference:
    """registry[:port]/path[:tag][@sha256:...]; `repository` is everything before the tag (registry included)."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        text = text.strip()
        name, _, digest = text.partition("@")
        tag = None
        last = name.rsplit("/", 1)[-1]
        if ":" in last:  # a colon in the last component is a tag; one in the first may be a port
            name, _, tag = name.rpartition(":")
        reference = cls(name, tag or None, digest or None)
        reference.check(text)
        return reference

    def check(self, text: str | None = None) -> None:
        shown = text or str(self)
        if not self.repository:
            raise BadReference(f"{shown!r}: no repository")
        components = self.repository.split("/")
        if self.registry:
            components = components[1:]
            if not components:
                raise BadReference(f"{shown!r}: a registry ({self.registry}) but no repository after it")
        for component in components:
            if not PATH_COMPONENT.match(component):
                raise BadReference(f"{shown!r}: repository part {component!r} is not lowercase [a-z0-9._-]")
        if self.tag is not None and not TAG.match(self.tag):
            raise BadReference(f"{shown!r}: tag {self.tag!r} is not [A-Za-z0-9_.-], at most 128 characters")
        if self.digest is not None and not DIGEST.match(self.digest):
            raise BadReference(f"{shown!r}: digest {self.digest!r} is not sha256:<64 hex digits>")

    @property
    def registry(self) -> str | None:
        """The host[:port] part, when the first component names one (a dot, a port or localhost)."""
        first, _, rest = self.repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return first
        return None

    @property
    def path(self) -> str:
        """The repository without its registry: how the registry (and a signature store) files it."""
        return self.repository.split("/", 1)[1] if self.registry else self.repository

    @property
    def loopback(self) -> bool:
        """A registry on this machine: plain HTTP is acceptable only there."""
        registry = self.registry or ""
        host = registry[1 : registry.find("]")] if registry.startswith("[") else registry.rsplit(":", 1)[0]
        return host in LOOPBACK_HOSTS or host.startswith("127.")

    def pinned(self, digest: str) -> ImageReference:
        return ImageReference(self.repository, None, digest)

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class PublishedImage:
    """One push, as `make publish-image` recorded it (build/image.json); Jenkins archives it with the SBOM."""

    repository: str  # registry/path, e.g. registry.example.com/ml/iris-classifier
    tag: str  # what was pushed: vX.Y.Z for a release, the commit for a build
    digest: str  # the manifest digest the push answered, checked with `skopeo inspect`
    commit: str  # the git commit the image was built from (its org.opencontainers.image.revision label)
    registry_version: str  # the model registry's version in the image's labels ("unreleased" for a build)
    source_image: str  # the local image that was pushed, e.g. iris-classifier:<commit>
    image_id: str  # its config digest (docker image ID): the same before and after the push
    pushed_at: str  # UTC, ISO 8601
    push_seconds: float
    sbom: str | None = None  # file name of the CycloneDX SBOM, next to this record
    sbom_sha256: str | None = None
    sbom_components: int | None = None
    signed_by: str | None = None  # the GPG fingerprint that signed it (skopeo simple signing)
    signature: str | None = None  # where the signature lies in the signature store (lookaside)
    format: int = RECORD_FORMAT

    @property
    def reference(self) -> ImageReference:
        return ImageReference(self.repository, self.tag, self.digest)

    @property
    def pinned(self) -> str:
        """What a deploy names: repository@digest (a tag can move; a digest cannot)."""
        return str(ImageReference(self.repository, None, self.digest))

    def describes(self, reference: ImageReference) -> bool:
        """True when this record is the push of `reference` (same repository and tag, or the same digest)."""
        if reference.repository != self.repository:
            return False
        if reference.digest:
            return reference.digest == self.digest and reference.tag in (None, self.tag)
        return reference.tag == self.tag

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: object, *, source: str = "record") -> PublishedImage:
        if not isinstance(data, dict):
            raise BadRecord(f"{source}: not a JSON object")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        required = [name for name, field in fields.items() if field.default is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise BadRecord(f"{source}: missing {', '.join(missing)}")
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise BadRecord(f"{source}: unknown field(s) {', '.join(unknown)}")
        if data.get("format", RECORD_FORMAT) != RECORD_FORMAT:
            raise BadRecord(f"{source}: format {data.get('format')!r}, this code reads format {RECORD_FORMAT}")
        record = cls(**data)
        if not DIGEST.match(str(record.digest)):
            raise BadRecord(f"{source}: digest {record.digest!r} is not sha256:<64 hex digits>")
        try:
            ImageReference(record.repository, record.tag).check()
        except BadReference as error:
            raise BadRecord(f"{source}: {error}") from None
        return record

    @classmethod
    def load(cls, path: Path) -> PublishedImage:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise BadRecord(f"{path}: not JSON ({error})") from None
        return cls.from_dict(data, source=str(path))

    def save(self, path: Path) -> Path:
        """Write atomically (a reader sees the old record or the new one, never half of one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as out:
            out.write(self.to_json())
        os.replace(temporary, path)
        return path


def recorded(path: Path, reference: ImageReference) -> PublishedImage | None:
    """The record at `path` if it is the push of `reference`, else None (no record, or one of another image)."""
    if not path.exists():
        return None
    record = PublishedImage.load(path)
    return record if record.describes(reference) else None
