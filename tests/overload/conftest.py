"""This commit's image for the flood (skipped with what to run when it is not built), and a served source
service with a small admission budget and short head timeout, for the live limits."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.flood import production_constraints


@pytest.fixture(scope="session")
def commit_image() -> str:
    """The image the production render names (iris-classifier:<commit>); skip if it is not built yet."""
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers (make docker-engine)")
    image = production_constraints(None).image
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.skip(f"no image {image}: run `make image` first (CI runs the flood after it: make flood-test)")
    return image
