"""A Spark standalone cluster on this machine: one master and one worker bound to 127.0.0.1, started from the
PySpark install of .venv-spark (its bin/spark-class), stopped by the pids recorded when they started.

    python -m iris_classifier.scoring.cluster up [--cores N] [--memory 2g]   prints SPARK_MASTER=spark://127.0.0.1:PORT
    python -m iris_classifier.scoring.cluster down                           stops the two recorded pids
    python -m iris_classifier.scoring.cluster status

Ports are free ones picked at start (several checkouts may each run a cluster). State, logs and the worker's
folder live in build/spark/; `down` stops a pid only while it is still that cluster's master or worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from iris_classifier.project.paths import ROOT
from iris_classifier.project.processes import free_port, terminate
from iris_classifier.scoring.spark_env import LOOPBACK, require_java, spark_environment, spark_home, spark_venv

DIRECTORY = ROOT / "build" / "spark"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class ClusterFailed(SystemExit):
    """The cluster could not start; the message says which part and where its log is."""


@dataclass
class Cluster:
    """A running master and worker this project started."""

    directory: str
    port: int
    webui_port: int
    worker_webui_port: int
    master_pid: int
    worker_pid: int

    @property
    def url(self) -> str:
        """What SPARK_MASTER is set to."""
        return f"spark://{LOOPBACK}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.webui_port, self.worker_webui_port)


def state_file(directory: Path) -> Path:
    return directory / "cluster.json"


def master_state(webui_port: int) -> dict | None:
    """The master's own account (its web UI's /json/): status and workers; None while it does not answer."""
    try:
        return requests.get(f"http://{LOOPBACK}:{webui_port}/json/", timeout=2).json()
    except (requests.RequestException, ValueError):
        return None


def wait_until(ready, process: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterFailed(f"spark-up: the {what} exited with {process.returncode}; its log: {log}\n{tail(log)}")
        if ready():
            return
        time.sleep(0.2)
    raise ClusterFailed(f"spark-up: the {what} was not ready within {timeout:g} s; its log: {log}\n{tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:] if log.exists() else ""


def launch(python: Path, directory: Path, args: list[str], log: Path) -> subprocess.Popen:
    """A long-running `spark-class` process (spark-class execs java: the pid is the JVM's)."""
    env = spark_environment(python)
    # Marks the JVM as this directory's, so `down` never signals a recycled pid.
    env["SPARK_DAEMON_JAVA_OPTS"] = f"-Diris.spark.cluster={directory}"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(spark_home(python) / "bin" / "spark-class"), *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )  # fmt: skip


def start(directory: Path = DIRECTORY, *, cores: int | None = None, memory: str = "2g") -> Cluster:
    """Start the master, then the worker; returns once the master lists the worker as ALIVE."""
    require_java("spark-up")
    python = spark_venv()
    directory = directory.resolve()
    (directory / "work").mkdir(parents=True, exist_ok=True)
    port, webui_port, worker_webui_port = free_port(), free_port(), free_port()
    master_log, worker_log = directory / "master.log", directory / "worker.log"
    master = launch(
        python, directory, [MASTER_CLASS, "--host", LOOPBACK, "--port", str(port), "--webui-port", str(webui_port)],
        master_log,
    )  # fmt: skip
    cluster = Cluster(str(directory), port, webui_port, worker_webui_port, master.pid, 0)
    try:
        wait_until(lambda: (master_state(webui_port) or {}).get("status") == "ALIVE", master, "master", master_log)
        worker_args = [WORKER_CLASS, "--host", LOOPBACK, "--webui-port", str(worker_webui_port)]
        worker_args += ["--cores", str(cores or os.cpu_count() or 1), "--memory", memory]
        worker_args += ["--work-dir", str(directory / "work"), cluster.url]
        worker = launch(python, directory, worker_args, worker_log)
        cluster.worker_pid = worker.pid
        state_file(directory).write_text(json.dumps(asdict(cluster)))  # from here on, `down` can stop both
        wait_until(lambda: alive_workers(cluster) > 0, worker, "worker", worker_log)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def alive_workers(cluster: Cluster) -> int:
    state = master_state(cluster.webui_port) or {}
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def is_ours(pid: int, directory: str, main_class: str) -> bool:
    """The pid is still this directory's master or worker JVM (not a recycled pid of something else)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"-Diris.spark.cluster={directory}".encode() in arguments and main_class.encode() in arguments


def stop(cluster: Cluster) -> None:
    """The worker first (it stops its executors), then the master; only pids that are still this cluster's."""
    for pid, main_class in ((cluster.worker_pid, WORKER_CLASS), (cluster.master_pid, MASTER_CLASS)):
        if pid and is_ours(pid, cluster.directory, main_class):
            terminate(pid, timeout=20)  # the worker stops its executors on SIGTERM
    state_file(Path(cluster.directory)).unlink(missing_ok=True)


def recorded(directory: Path = DIRECTORY) -> Cluster | None:
    """The cluster recorded in `directory` while its master still runs, else None."""
    path = state_file(directory.resolve())
    if not path.exists():
        return None
    cluster = Cluster(**json.loads(path.read_text()))
    return cluster if is_ours(cluster.master_pid, cluster.directory, MASTER_CLASS) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DIRECTORY, help="state, logs, the worker's folder (build/spark)")
    parser.add_argument("--cores", type=int, default=None, help="the worker's cores (default: all)")
    parser.add_argument("--memory", default="2g", help="the worker's memory for executors")
    args = parser.parse_args(argv)
    found = recorded(args.dir)
    if args.command == "up":
        if found is None:
            found = start(args.dir, cores=args.cores, memory=args.memory)
            print(f"spark-up: master pid {found.master_pid}, worker pid {found.worker_pid}; logs in {found.directory}")
            print(f"spark-up: web UI http://{LOOPBACK}:{found.webui_port}/ ; stop with make spark-down")
        else:
            print(f"spark-up: already running (master pid {found.master_pid}, worker pid {found.worker_pid})")
        print(f"SPARK_MASTER={found.url}")
    elif args.command == "down":
        if found is None:
            state_file(args.dir.resolve()).unlink(missing_ok=True)
            print(f"spark-down: no cluster started from {args.dir} is running; nothing to stop")
            return 0
        stop(found)
        print(f"spark-down: stopped worker pid {found.worker_pid} and master pid {found.master_pid}")
    else:
        if found is None:
            print(f"spark: no cluster running from {args.dir}")
            return 1
        print(f"spark: master pid {found.master_pid}, {alive_workers(found)} worker(s) alive; SPARK_MASTER={found.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
