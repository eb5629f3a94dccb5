"""This commit's image through the whole publish: pushed to a real registry and signed -> digest recorded -> skopeo
inspect agrees -> the render pins that digest -> strict schemas and checkov pass with no digest skip -> the
signature verifies -> pulled by digest into a clean name -> run under the production pod's constraints -> make
smoke passes. And its SBOM: valid CycloneDX, the same package versions as `pip freeze` inside the image."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from iris_classifier.project.paths import ROOT
from iris_classifier.registry import sbom
from iris_classifier.registry.published import PublishedImage, digest_of
from ops import k8s
from tests.publish.conftest import UNIQUE, skopeo_inspect

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.xdist_group("publish")]


def test_the_digest_is_recorded_and_the_registry_agrees(published_commit_image, commit_image, keys):
    done = published_commit_image
    assert PublishedImage.load(done.record_path) == done.record
    record = done.record
    assert record.repository == done.target.repository and record.tag == done.target.tag
    assert record.source_image == commit_image and record.signed_by == keys.fingerprint
    labels = json.loads(subprocess.run(["docker", "image", "inspect", commit_image], capture_output=True,
                                       check=True).stdout)[0]  # fmt: skip
    assert record.image_id == labels["Id"]
    assert record.commit == labels["Config"]["Labels"]["org.opencontainers.image.revision"]
    inspected = skopeo_inspect(str(done.target))
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == record.digest
    assert digest_of(skopeo_inspect(str(done.target), "--raw").stdout) == record.digest
    image_size = labels["Size"] / 1e6
    print(f"\npublish: {image_size:,.0f} MB image pushed and signed in {record.push_seconds:.0f} s "
          f"(whole publish with SBOM: {done.seconds:.0f} s); {record.reference}")  # fmt: skip


def test_the_sbom_validates_and_lists_what_pip_freeze_finds_in_the_image(published_commit_image, commit_image):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    record = published_commit_image.record
    path = published_commit_image.record_path.parent / record.sbom
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sbom_sha256
    text = path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    subject = bom["metadata"]["component"]
    assert subject["type"] == "container" and subject["hashes"][0]["content"] == record.digest.removeprefix("sha256:")
    assert subject["purl"].startswith(f"pkg:oci/iris-classifier@sha256%3A{record.digest.removeprefix('sha256:')}?")
    # pip, run inside the image against the environment the service runs in (its VIRTUAL_ENV).
    frozen = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", commit_image, "-c",
         'pip --disable-pip-version-check --python "$VIRTUAL_ENV/bin/python" freeze --all'],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    in_image = sbom.freeze_versions(frozen)
    assert sbom.component_versions(bom) == in_image
    assert len(in_image) == record.sbom_components > 50
    assert {"bentoml", "scikit-learn", "onnxruntime"} <= set(in_image)
    assert all(component["purl"].startswith("pkg:pypi/") for component in bom["components"])
    print(
        f"\nsbom: {len(bom['components'])} packages, CycloneDX {bom['specVersion']}, equal to pip freeze in the image"
    )


def test_the_render_pins_the_digest_and_checkov_passes_without_a_skip(published_commit_image, registry, tmp_path):
    done = published_commit_image
    renders = [
        k8s.render(env, tag=done.target.tag, registry=registry.address, out_dir=tmp_path, record=done.record_path)
        for env in k8s.ENVIRONMENTS
    ]
    for path in renders:
        deployment = k8s.find(k8s.documents(path), "Deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == done.record.pinned
        assert not any(key.startswith("checkov.io/skip") for key in deployment["metadata"].get("annotations", {}))
    k8s.validate(renders)
    found = k8s.scan(renders)
    assert (found.failed, found.skipped) == (0, []) and found.passed >= 150


def test_pulled_by_digest_it_serves_under_the_pods_constraints_and_passes_make_smoke(
    published_commit_image, registry, keys, tmp_path
):
    done = published_commit_image
    pinned = done.target.pinned(done.record.digest)
    # The policy check a deploy runs first (make verify-image), on the digest.
    verified = subprocess.run(
        ["make", "--no-print-directory", "verify-image", f"REF={pinned}", f"SIGN_PUBKEY={keys.pubkey}",
         f"SIGSTORE={done.sigstore}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    # Pulled by digest, as a kubelet pulls the pinned render's image, into a name nothing else uses.
    clean = f"iris-publish-pulled-{UNIQUE}:round-trip"
    subprocess.run(["docker", "pull", "--quiet", str(pinned)], check=True, capture_output=True, timeout=600)
    try:
        subprocess.run(["docker", "tag", str(pinned), clean], check=True, capture_output=True)
        pulled = json.loads(subprocess.run(["docker", "image", "inspect", clean], capture_output=True,
                                           check=True).stdout)[0]  # fmt: skip
        assert pulled["Id"] == done.record.image_id  # the very image that was built and pushed
        assert str(pinned) in pulled["RepoDigests"]
        render = k8s.render("production", tag=done.target.tag, registry=registry.address, out_dir=tmp_path,
                            record=done.record_path)  # fmt: skip
        constraints = k8s.pod_constraints(k8s.documents(render))
        assert constraints.image == done.record.pinned
        constraints.image = clean
        name = f"iris-publish-pod-{UNIQUE}"
        with k8s.running_pod(constraints, name=name, port=k8s.free_port()) as url:
            ready = k8s.wait_ready(url, timeout=180, container=name)
            smoke = subprocess.run(
                ["make", "--no-print-directory", "smoke", f"URL={url}", f"GIT_COMMIT={done.record.commit}"],
                cwd=ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert smoke.returncode == 0, smoke.stdout + smoke.stderr
            assert "/model names commit" in smoke.stdout
        print(f"\nround trip: {clean} (pulled as {pinned}) ready in {ready:.1f} s under the pod's constraints; "
              "make smoke passed")  # fmt: skip
    finally:
        subprocess.run(["docker", "rmi", clean, str(pinned)], capture_output=True)  # names only: the image stays
