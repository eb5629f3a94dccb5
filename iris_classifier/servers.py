"""Start and stop real `bentoml serve` processes on free loopback ports, by the pid we started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import requests

from iris_classifier.paths import BENTOML, ROOT


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


@dataclass
class Server:
    """A served target (`service:IrisClassifier` or a Bento tag) in its own process group."""

    target: str
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    home: str | None = None
    cwd: Path = ROOT  # where `bentoml serve` runs: a source target is imported from here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def private_home(self) -> str:
        """A BentoML home of its own that shares the project's model and Bento stores.

        `bentoml serve` wipes $BENTOML_HOME/prometheus_multiproc_dir when it starts, which would
        freeze the metrics of any other server running on the same home.
        """
        shared = Path(os.environ.get("BENTOML_HOME", ROOT / ".bentoml"))
        home = Path(tempfile.mkdtemp(prefix="bentoml-home-"))
        for store in ("models", "bentos"):
            (shared / store).mkdir(parents=True, exist_ok=True)
            (home / store).symlink_to(shared / store)
        return str(home)

    def start(self, *, wait_ready: float = 240.0, extra_args: tuple[str, ...] = ()) -> Server:
        self.home = self.home or self.private_home()
        env = {**os.environ, "BENTOML_HOME": self.home, **self.env}
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [BENTOML, "serve", self.target, "--host", "127.0.0.1", "--port", str(self.port), *extra_args],
            cwd=self.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends its workers too
        )
        if wait_ready:
            try:
                self.wait_ready(wait_ready)
            except BaseException:
                self.stop()  # never leave a half-started server behind
                raise
        return self

    def wait_ready(self, timeout: float) -> float:
        """Seconds until /readyz answered 200; raises with the log tail if it never does."""
        try:
            seconds = wait_for_200(f"{self.url}/readyz", self.process, timeout)
        except RuntimeError as exited:
            raise RuntimeError(f"{exited}:\n{self.log_tail()}") from None
        if seconds is None:
            raise TimeoutError(f"{self.target} not ready after {timeout} s:\n{self.log_tail()}")
        return seconds

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, keep_home: bool = False) -> None:
        stop_process_group(self.process)
        if self.home and not keep_home:
            shutil.rmtree(self.home, ignore_errors=True)  # removes the links, never the shared stores
            self.home = None


@dataclass
class DemoProcess:
    """The standalone Gradio demo (`python -m demo.app`) pointed at an API URL."""

    api_url: str
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DemoProcess:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "demo.app", "--api-url", self.api_url, "--port", str(self.port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_for_200(self.url, self.process, timeout) is None:
            self.stop()
            raise TimeoutError(f"demo not up after {timeout} s")
        return self

    def stop(self) -> None:
        stop_process_group(self.process)
