"""Real `bentoml serve` and demo processes on free loopback ports for tests, benchmarks and ops, stopped by pid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from iris_classifier.project.paths import BENTOML, ROOT
from iris_classifier.project.processes import free_port, stop_process_group, wait_for_200


@dataclass
class Server:
    """A served target (`service:IrisClassifier` or a Bento tag) in its own process group."""

    target: str
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)  # the Open Inference Protocol over gRPC, on loopback
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    home: str | None = None
    cwd: Path = ROOT  # where `bentoml serve` runs: a source target is imported from here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

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
        grpc = {"IRIS_GRPC_HOST": "127.0.0.1", "IRIS_GRPC_PORT": str(self.grpc_port)}
        env = {**os.environ, "BENTOML_HOME": self.home, **grpc, **self.env}
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
