"""The registry itself: Distribution's binary on loopback, started and stopped by its pid (fixture and make targets)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from iris_classifier.project.paths import ROOT
from ops import image_registry

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("publish")]


def test_the_fixture_registry_is_distribution_on_loopback(registry):
    answer = requests.get(f"http://{registry.address}/v2/", timeout=5)
    assert answer.status_code == 200 and answer.json() == {}
    assert answer.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    cmdline = Path(f"/proc/{registry.pid}/cmdline").read_bytes().split(b"\0")
    assert Path(os.fsdecode(cmdline[0])).name in image_registry.BINARIES
    assert os.fsdecode(cmdline[2]) == str(registry.config)
    assert f"rootdirectory: {registry.storage}" in registry.config.read_text()
    assert registry.address.startswith("127.0.0.1:")
    assert "distribution" in image_registry.version()


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_make_registry_up_and_down_by_the_recorded_pid(tools, tmp_path):
    folder = tmp_path / "registry"
    up = make("registry-up", f"REGISTRY_DIR={folder}")
    assert up.returncode == 0, up.stderr
    address = up.stdout.strip().splitlines()[-1].removeprefix("REGISTRY=")
    state = json.loads((folder / "registry.json").read_text())
    assert address == f"127.0.0.1:{state['port']}" and requests.get(f"http://{address}/v2/", timeout=5).ok
    try:
        again = make("registry-up", f"REGISTRY_DIR={folder}")  # a second up finds the first
        assert again.returncode == 0 and f"already running (pid {state['pid']})" in again.stdout
    finally:
        down = make("registry-down", f"REGISTRY_DIR={folder}")
    assert down.returncode == 0, down.stderr
    assert f"stopped pid {state['pid']}" in down.stdout
    assert not Path(f"/proc/{state['pid']}").exists() or b"zombie" in Path(f"/proc/{state['pid']}/status").read_bytes()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}/v2/", timeout=5)
    assert (folder / "storage").is_dir() and not (folder / "registry.json").exists()
    assert "nothing to stop" in make("registry-down", f"REGISTRY_DIR={folder}").stdout


def test_down_never_stops_a_process_the_registry_did_not_start(tools, tmp_path):
    """A stale pid file naming someone else's process (here: a sleep of this test's) is not acted on."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "registry.json").write_text(
            json.dumps({"pid": stranger.pid, "port": 1, "config": str(tmp_path / "config.yml")})
        )
        down = make("registry-down", f"REGISTRY_DIR={tmp_path}")
        assert down.returncode == 0 and "nothing to stop" in down.stdout
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
