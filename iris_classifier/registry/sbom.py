"""The image's software bill of materials (CycloneDX JSON): which image it describes, and the packages in it.

ops/publish.py makes the SBOM with cyclonedx-py from the image's own virtualenv; here are the pure parts:
naming the image as the SBOM's subject (an OCI package URL with the pushed digest), and reading package
versions back, from the SBOM and from `pip freeze`, so the two can be compared.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from iris_classifier.registry.published import ImageReference

SPEC_VERSION = "1.6"


def canonical(name: str) -> str:
    """A distribution's normalized name (PEP 503): `PyYAML`, `pyyaml` and `py_yaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def freeze_versions(text: str) -> dict[str, str]:
    """`pip freeze` output -> {normalized name: version}; a direct URL install keeps its URL as the version."""
    versions = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" in line:
            name, _, version = line.partition("==")
        elif " @ " in line:
            name, _, version = line.partition(" @ ")
        else:
            raise ValueError(f"not a pinned requirement: {line!r}")
        versions[canonical(name.strip())] = version.strip()
    return versions


def component_versions(bom: dict) -> dict[str, str]:
    """The SBOM's library components -> {normalized name: version}."""
    return {
        canonical(component["name"]): component.get("version", "")
        for component in bom.get("components", [])
        if component.get("type") == "library"
    }


def oci_purl(reference: ImageReference, digest: str) -> str:
    """The package URL of an OCI image (purl-spec `oci` type): the digest is the version, the rest qualifiers."""
    name = reference.repository.rsplit("/", 1)[-1]
    qualifiers = f"repository_url={quote(reference.repository, safe='/:')}"
    if reference.tag:
        qualifiers += f"&tag={quote(reference.tag)}"
    return f"pkg:oci/{name}@{quote(digest, safe='')}?{qualifiers}"


def describe_image(bom: dict, *, image: str, image_id: str, published: ImageReference | None = None) -> dict:
    """Make the image the SBOM's subject (metadata.component, type container), with its pushed digest when known.

    The package components stay as cyclonedx-py listed them; the image depends on every one of them.
    """
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    component: dict = {
        "type": "container",
        "bom-ref": f"image:{image_id}",
        "name": published.repository if published else name,
        "version": (published.tag if published else tag) or image_id,
        "properties": [{"name": "oci:image:id", "value": image_id}, {"name": "oci:image:local", "value": image}],
    }
    if published and published.digest:
        component["purl"] = oci_purl(published, published.digest)
        component["hashes"] = [{"alg": "SHA-256", "content": published.digest.removeprefix("sha256:")}]
        component["properties"].append({"name": "oci:image:digest", "value": published.digest})
    described = {**bom, "metadata": {**bom.get("metadata", {}), "component": component}}
    refs = [item["bom-ref"] for item in bom.get("components", []) if "bom-ref" in item]
    others = [entry for entry in bom.get("dependencies", []) if entry.get("ref") != component["bom-ref"]]
    described["dependencies"] = [{"ref": component["bom-ref"], "dependsOn": refs}, *others]
    return described
