"""A real OCI registry on loopback: CNCF Distribution (Debian's docker-registry), for tests and for trying a publish.

python -m ops.image_registry up [--dir build/registry] [--port N]   start one; prints REGISTRY=127.0.0.1:PORT
python -m ops.image_registry down [--dir build/registry]            stop the one `up` started (by its pid)
python -m ops.image_registry status [--dir build/registry]

Storage, config, log and pid live in the directory; `down` stops only the pid recorded there, and only when
that process is still the registry serving that directory's config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from iris_classifier.project.paths import ROOT
from iris_classifier.project.processes import free_port, terminate

DIRECTORY = ROOT / "build" / "registry"
BINARIES = ("docker-registry", "registry")  # Debian's name, upstream's name
INSTALL = "an admin installs it once: apt-get install -y docker-registry (ops/agent_setup.sh does)"


class RegistryFailed(SystemExit):
    """The registry could not be started or stopped; the message says why and where its log is."""


def binary() -> str:
    for name in BINARIES:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    raise RegistryFailed(f"registry: no Distribution registry binary ({' or '.join(BINARIES)}); {INSTALL}")


def version() -> str:
    """e.g. `docker-registry github.com/docker/distribution v2.8.2+unknown`."""
    return subprocess.run([binary(), "--version"], capture_output=True, text=True).stdout.strip()


@dataclass
class Registry:
    """A running registry this project started."""

    directory: Path
    port: int
    pid: int

    @property
    def address(self) -> str:
        """What REGISTRY is set to: host:port."""
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.directory / "storage"

    @property
    def config(self) -> Path:
        return self.directory / "config.yml"

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"


def config_text(storage: Path, port: int, htpasswd: Path | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: iris-test", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def answers(address: str) -> int | None:
    """The HTTP status of GET /v2/ (200 open, 401 behind credentials), or None when nothing answers."""
    try:
        return requests.get(f"http://{address}/v2/", timeout=2).status_code
    except requests.RequestException:
        return None


def start(directory: Path = DIRECTORY, *, port: int | None = None, htpasswd: Path | None = None) -> Registry:
    """Start `docker-registry serve` on 127.0.0.1 (a free port unless given); returns once /v2/ answers."""
    program = binary()
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / "registry.json"
    if state.exists() and (running := _recorded(directory)) is not None:
        raise RegistryFailed(f"registry: one already runs from {directory} (pid {running.pid}, {running.address})")
    for attempt in range(3):  # a free port can be taken between the probe and the bind: try another
        chosen = port or free_port()
        registry = Registry(directory.resolve(), chosen, 0)
        registry.storage.mkdir(exist_ok=True)
        registry.config.write_text(config_text(registry.storage, chosen, htpasswd))
        with registry.log.open("ab") as log:
            process = subprocess.Popen(
                [program, "serve", str(registry.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        registry.pid = process.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if answers(registry.address) in (200, 401):
                state.write_text(json.dumps({"pid": registry.pid, "port": chosen, "config": str(registry.config)}))
                return registry
            time.sleep(0.05)
        if process.poll() is None:
            terminate(process.pid)
        tail = registry.log.read_text(errors="replace")[-1500:]
        if port or attempt == 2 or "address already in use" not in tail:
            raise RegistryFailed(f"registry: {program} did not answer on {registry.address} ({registry.log}):\n{tail}")
    raise AssertionError("unreachable")


def _is_ours(pid: int, config: Path) -> bool:
    """The pid is still the registry serving this config (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(config).encode() in cmdline and any(Path(os.fsdecode(arg)).name in BINARIES for arg in cmdline[:1])


def _recorded(directory: Path) -> Registry | None:
    state = directory / "registry.json"
    if not state.exists():
        return None
    data = json.loads(state.read_text())
    if not _is_ours(data["pid"], Path(data["config"])):
        return None
    return Registry(directory.resolve(), data["port"], data["pid"])


def stop(registry: Registry) -> None:
    if _is_ours(registry.pid, registry.config):
        terminate(registry.pid)
    (registry.directory / "registry.json").unlink(missing_ok=True)


@contextlib.contextmanager
def running(directory: Path, *, htpasswd: Path | None = None) -> Iterator[Registry]:
    """A registry for the length of a `with` block (the tests' fixture)."""
    registry = start(directory, htpasswd=htpasswd)
    try:
        yield registry
    finally:
        stop(registry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DIRECTORY, help="config, storage, log and pid (build/registry)")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)
    found = _recorded(args.dir)
    if args.command == "up":
        if found:
            print(f"registry-up: already running (pid {found.pid}); REGISTRY={found.address}")
            return 0
        registry = start(args.dir, port=args.port)
        print(f"registry-up: {version() or 'registry'} (pid {registry.pid}), storage {registry.storage}")
        print(f"REGISTRY={registry.address}")
    elif args.command == "down":
        if not found:
            (args.dir / "registry.json").unlink(missing_ok=True)
            print(f"registry-down: no registry started from {args.dir} is running; nothing to stop")
            return 0
        stop(found)
        print(f"registry-down: stopped pid {found.pid} ({found.address}); storage kept in {found.storage}")
    else:
        if not found:
            print(f"registry: none running from {args.dir}")
            return 1
        print(f"registry: pid {found.pid}, REGISTRY={found.address}, answers {answers(found.address)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
