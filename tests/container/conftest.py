"""This project's running container (make run-image): its inspect record and its image's, for the container tests."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

URL = os.environ.get("IRIS_CONTAINER_URL", "http://127.0.0.1:3000")
CONTAINER = os.environ.get("CONTAINER", "iris-classifier")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def container() -> dict:
    try:
        return json.loads(docker("inspect", CONTAINER))[0]
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.fail(f"no container {CONTAINER}: run `make image run-image` first")


@pytest.fixture(scope="module")
def image(container) -> dict:
    return json.loads(docker("image", "inspect", container["Image"]))[0]
