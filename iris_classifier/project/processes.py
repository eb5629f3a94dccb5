"""Start, poll and stop processes we launched: free loopback ports, readiness polls, stops by pid or process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds_until_ready(url: str, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until GET {url}/readyz answered 200, or None after `timeout` (for containers: no process to watch)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(interval)
    return None


def terminate(pid: int, timeout: float = 10) -> None:
    """SIGTERM a process we started and recorded by pid, SIGKILL if it lingers past `timeout`; reaped when it is
    our child (a test that started it in-process)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_process_group(process: subprocess.Popen | None) -> None:
    """SIGTERM the process group we started (start_new_session=True), SIGKILL if it lingers."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for_200(url: str, process: subprocess.Popen, timeout: float) -> float | None:
    """Seconds until GET url answered 200, or None after timeout; raises if the process exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args[:4]))} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(0.1)
    return None
