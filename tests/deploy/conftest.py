"""Renders of both overlays (this commit's image tag), and this commit's image when it has been built."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ops import k8s


@pytest.fixture(scope="session")
def render_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("k8s")


@pytest.fixture(scope="session")
def renders(render_dir) -> dict[str, Path]:
    # No record: a build/image.json of the project's (a publish) never changes what these tests see.
    return {env: k8s.render(env, out_dir=render_dir, record=render_dir / "no-record.json") for env in k8s.ENVIRONMENTS}


@pytest.fixture(scope="session")
def docs(renders) -> dict[str, list[dict]]:
    return {env: k8s.documents(path) for env, path in renders.items()}


@pytest.fixture(scope="session")
def commit_image(renders) -> str:
    """The image the production render names (iris-classifier:<commit>); skip if not built yet."""
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers (make docker-engine)")
    image = k8s.pod_constraints(k8s.documents(renders["production"])).image
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.skip(f"no image {image}: run `make image` (CI runs these after it: make k8s-pod-check rollout-test)")
    return image
