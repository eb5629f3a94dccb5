"""A rolling update under load, behind a real HAProxy: counts every answer; zero may fail.

python -m ops.rollout [--seconds-before 5] [--clients 8]

Two containers of this commit's image (the production pod's constraints, read from the render) serve
behind HAProxy on loopback while client threads send /classify over keep-alive connections. Each old
container is then replaced the way a Deployment with maxUnavailable 0 does it: the new container
starts and passes /readyz, joins the pool (HAProxy runtime API), the old one is drained from the pool
and sent SIGTERM (`docker stop`) while requests are still in flight on it: the pool's own, and batch
requests sent to it directly, standing in for connections a kube-proxy still routes to a terminating
pod. Every answer is counted: non-2xx, connection errors, wrong species, and whether each request in
flight at SIGTERM completed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from ops import k8s

PREFIX = "iris-k8s-rollout-"
# Debian installs it in /usr/sbin, which is not on an ordinary user's PATH (a Jenkins agent's, say).
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/local/sbin:/usr/sbin:/sbin")
HAPROXY_MISSING = "haproxy is not installed: `apt-get install -y haproxy` (root; .ci/run installs it)"
# 2,000 flowers: ~10-20 ms of work, so four loops nearly always have one in flight. (Each flower is a line
# of the prediction log, and in Docker the log's tmpfs counts toward the container's memory limit.)
BATCH_FLOWERS = 2_000
BATCH = json.dumps(
    {"flowers": [flower for _ in range(BATCH_FLOWERS) for flower in EXAMPLE_FLOWERS.values()][:BATCH_FLOWERS]}
).encode()


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    non_2xx: int = 0
    connection_errors: int = 0
    wrong: int = 0
    latencies: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    events: list[str] = field(default_factory=list)  # what the rollout did, and when (t= seconds from the start)

    def event(self, text: str) -> None:
        self.events.append(f"t={time.monotonic() - self.started:.1f} s {text}")

    def record(self, *, seconds: float, status: int | None, error: str | None = None, wrong: bool = False) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if error is not None:
                self.connection_errors += 1
            elif not 200 <= status < 300:
                self.non_2xx += 1
            elif wrong:
                self.wrong += 1
            else:
                self.ok += 1
            if (error or wrong or (status and not 200 <= status < 300)) and len(self.examples) < 5:
                what = error or f"HTTP {status}" + (" wrong species" if wrong else "")
                self.examples.append(f"{what} at t={time.monotonic() - self.started:.1f} s")

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def failures(self) -> int:
        return self.non_2xx + self.connection_errors + self.wrong

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def client_loop(port: int, tally: Tally, stop: threading.Event) -> None:
    """One keep-alive connection to the load balancer; reconnects (and counts the error) if it breaks."""
    flowers = [(json.dumps(flower).encode(), species) for species, flower in EXAMPLE_FLOWERS.items()]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        body, species = flowers[i % 3]
        i += 1
        started = time.perf_counter()
        try:
            connection.request("POST", "/classify", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            wrong = response.status == 200 and json.loads(payload)["species"] != species
            tally.record(seconds=time.perf_counter() - started, status=response.status, wrong=wrong)
        except (OSError, http.client.HTTPException) as error:
            tally.record(seconds=time.perf_counter() - started, status=None, error=f"{type(error).__name__}: {error}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()


@dataclass
class InFlight:
    """Batch requests sent straight to the container that is about to get SIGTERM."""

    started_at: list[float] = field(default_factory=list)
    outcomes: list[tuple[float, float, int | None, str | None]] = field(default_factory=list)  # start, end, status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, moment: float) -> list[tuple[float, float, int | None, str | None]]:
        return [outcome for outcome in self.outcomes if outcome[0] < moment < outcome[1]]


def direct_batch_loop(port: int, record: InFlight, stop: threading.Event) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection.request("POST", "/classify_batch", body=BATCH, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            ok = response.status == 200 and len(json.loads(payload)) == BATCH_FLOWERS
            outcome = (started, time.monotonic(), response.status if ok else -response.status, None)
        except (OSError, http.client.HTTPException) as error:
            outcome = (started, time.monotonic(), None, f"{type(error).__name__}: {error}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        with record.lock:
            record.outcomes.append(outcome)
    connection.close()


class HAProxy:
    """A real HAProxy on loopback: frontend -> backend `pool`, driven through its admin socket."""

    def __init__(self, workdir: Path, frontend_port: int, servers: dict[str, tuple[int, bool]]) -> None:
        self.socket_path = workdir / "haproxy.sock"
        lines = [
            "global",
            f"  stats socket {self.socket_path} mode 600 level admin",
            "  maxconn 512",
            "defaults",
            "  mode http",
            "  option http-keep-alive",
            "  timeout connect 2s",
            "  timeout client 60s",
            "  timeout server 60s",
            "  timeout check 3s  # a loaded 1-CPU container answers /readyz late, but it is not down",
            # One server connection per request (clients keep theirs to HAProxy): a drained server gets no
            # new request at all, as a pod removed from a Service's endpoints gets no new connection.
            "  http-reuse never",
            "  option http-server-close",
            "  retries 0  # no retry on another server: a failed request must show up as failed",
            "frontend web",
            f"  bind 127.0.0.1:{frontend_port}",
            "  default_backend pool",
            "backend pool",
            "  balance roundrobin",
            "  option httpchk GET /readyz",  # the readinessProbe
            "  default-server inter 1s fall 2 rise 1",
        ]
        for name, (port, enabled) in servers.items():
            lines.append(f"  server {name} 127.0.0.1:{port} check" + ("" if enabled else " disabled"))
        self.config = workdir / "haproxy.cfg"
        self.config.write_text("\n".join(lines) + "\n")
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config: {check.stdout}{check.stderr}")
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket_path.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("haproxy did not start")
            time.sleep(0.05)

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        rows = self.command("show stat").lstrip("# ").splitlines()
        header = rows[0].split(",")
        table = [dict(zip(header, row.split(","), strict=False)) for row in rows[1:] if row]
        return {row["svname"]: row for row in table if row.get("pxname") == "pool"}

    def wait_status(self, server: str, status: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()[server]["status"].startswith(status):
                return
            time.sleep(0.1)
        raise RuntimeError(f"haproxy: server {server} not {status} after {timeout} s: {self.stats()[server]['status']}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Replacement:
    old: str
    new: str
    new_ready_seconds: float
    pool_in_flight_at_sigterm: int
    direct_in_flight_at_sigterm: int
    direct_completed: int
    direct_failed: list[str]
    stop_seconds: float


@dataclass
class RolloutResult:
    tally: Tally
    replacements: list[Replacement]
    seconds: float

    @property
    def in_flight_at_sigterm(self) -> int:
        return sum(r.pool_in_flight_at_sigterm + r.direct_in_flight_at_sigterm for r in self.replacements)

    @property
    def in_flight_failed(self) -> int:
        return sum(len(r.direct_failed) for r in self.replacements)

    def summary(self) -> str:
        t = self.tally
        lines = [
            f"rollout: {t.requests} requests in {self.seconds:.0f} s through HAProxy, "
            f"{len(self.replacements)} containers replaced under load",
            f"rollout: failures {t.failures} (non-2xx {t.non_2xx}, connection errors {t.connection_errors}, "
            f"wrong species {t.wrong}); p50 {t.percentile(0.5) * 1000:.1f} ms, p99 {t.percentile(0.99) * 1000:.1f} ms, "
            f"max {max(t.latencies, default=0) * 1000:.0f} ms",
        ]
        for r in self.replacements:
            lines.append(
                f"rollout: {r.old} -> {r.new}: new ready in {r.new_ready_seconds:.1f} s; at SIGTERM "
                f"{r.pool_in_flight_at_sigterm} in flight from the pool, {r.direct_in_flight_at_sigterm} batch "
                f"requests in flight directly, {r.direct_completed} of them completed with 200; "
                f"old container stopped in {r.stop_seconds:.1f} s"
            )
        if t.examples:
            lines.append(f"rollout: first failures: {t.examples}")
            lines.append(f"rollout: events: {t.events}")
        for r in self.replacements:
            if r.direct_failed:
                lines.append(f"rollout: in-flight failures at SIGTERM of {r.old}: {r.direct_failed[:5]}")
        verdict = "PASS" if t.failures == 0 and self.in_flight_failed == 0 and self.in_flight_at_sigterm else "FAIL"
        lines.append(f"rollout: {verdict}")
        return "\n".join(lines)


def pre_stop_seconds(docs: list[dict]) -> float:
    """The Deployment's preStop `sleep N`."""
    (container,) = k8s.find(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


def rollout(
    *,
    image: str | None = None,
    clients: int = 4,
    direct_clients: int = 4,
    seconds_between: float = 5,
    pre_stop: float | None = None,
) -> RolloutResult:
    if HAPROXY is None:
        raise SystemExit(HAPROXY_MISSING)
    docs = k8s.documents(k8s.render("production"))
    constraints = k8s.pod_constraints(docs)
    pre_stop = pre_stop_seconds(docs) if pre_stop is None else pre_stop
    if image:
        constraints.image = image
    if subprocess.run(["docker", "image", "inspect", constraints.image], capture_output=True).returncode != 0:
        raise SystemExit(f"rollout: no image {constraints.image}; run `make image` first")
    slots = {name: k8s.free_port() for name in ("old1", "old2", "new1", "new2")}
    frontend = k8s.free_port()
    replacements: list[Replacement] = []
    tally = Tally()
    stop_load = threading.Event()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iris-rollout-")))
        urls = {}
        for name in ("old1", "old2"):
            urls[name] = stack.enter_context(k8s.running_pod(constraints, name=PREFIX + name, port=slots[name]))
        for name in ("old1", "old2"):
            k8s.wait_ready(urls[name], timeout=240, container=PREFIX + name)
        haproxy = HAProxy(workdir, frontend, {name: (port, name.startswith("old")) for name, port in slots.items()})
        stack.callback(haproxy.stop)
        for name in ("old1", "old2"):
            haproxy.wait_status(name, "UP")
        threads = [
            threading.Thread(target=client_loop, args=(frontend, tally, stop_load), daemon=True) for _ in range(clients)
        ]
        started = tally.started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(seconds_between)
        for old, new in (("old1", "new1"), ("old2", "new2")):
            # 1. the new pod starts and passes its readiness probe (maxSurge 1)
            new_started = time.monotonic()
            urls[new] = stack.enter_context(k8s.running_pod(constraints, name=PREFIX + new, port=slots[new]))
            k8s.wait_ready(urls[new], timeout=240, container=PREFIX + new)
            ready = time.monotonic() - new_started
            # 2. it joins the pool (the endpoints controller adds a ready pod)
            haproxy.command(f"enable server pool/{new}")
            tally.event(f"{new} joins the pool")
            haproxy.wait_status(new, "UP")
            time.sleep(1)
            # 3. the old pod leaves the pool and gets SIGTERM while requests are still in flight on it
            haproxy.command(f"set server pool/{old} state drain")
            tally.event(f"{old} drained")
            # The preStop sleep: SIGTERM at the very moment a pod leaves the pool loses the requests the
            # balancer was still connecting to it (measured: 1 in ~16,000, at that instant).
            time.sleep(pre_stop)
            # Batch requests straight to the old container over the last second before SIGTERM, like
            # connections a kube-proxy still routes to a terminating pod: SIGTERM finds them in flight.
            # (Ten seconds of four such clients got the 768 MiB container OOM-killed: see docs/kubernetes.md, Memory.)
            direct = InFlight()
            stop_direct = threading.Event()
            direct_threads = [
                threading.Thread(target=direct_batch_loop, args=(slots[old], direct, stop_direct), daemon=True)
                for _ in range(direct_clients)
            ]
            for thread in direct_threads:
                thread.start()
            time.sleep(1.0)
            pool_in_flight = int(haproxy.stats()[old]["scur"] or 0)
            sigterm_at = time.monotonic()
            tally.event(f"SIGTERM to {old}")
            stopping = subprocess.Popen(["docker", "stop", "--time", "30", PREFIX + old], stdout=subprocess.DEVNULL)
            time.sleep(0.2)
            stop_direct.set()  # no new direct requests after SIGTERM: a terminating pod gets no new connections
            stopping.wait(timeout=60)
            stop_seconds = time.monotonic() - sigterm_at
            tally.event(f"{old} exited")
            for thread in direct_threads:
                thread.join(timeout=60)
            haproxy.command(f"set server pool/{old} state maint")
            in_flight = direct.at(sigterm_at)
            failed = [error or f"HTTP {status}" for _, _, status, error in in_flight if status != 200]
            replacements.append(
                Replacement(
                    old=old,
                    new=new,
                    new_ready_seconds=ready,
                    pool_in_flight_at_sigterm=pool_in_flight,
                    direct_in_flight_at_sigterm=len(in_flight),
                    direct_completed=len(in_flight) - len(failed),
                    direct_failed=failed,
                    stop_seconds=stop_seconds,
                )
            )
            time.sleep(seconds_between)
        stop_load.set()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.monotonic() - started
    return RolloutResult(tally=tally, replacements=replacements, seconds=elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=None, help="default: this commit's image, as the production render names it")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive client threads through HAProxy")
    parser.add_argument("--seconds-between", type=float, default=5, help="load before, between and after")
    parser.add_argument("--pre-stop", type=float, default=None, help="drain to SIGTERM (default: the render's preStop)")
    args = parser.parse_args(argv)
    result = rollout(
        image=args.image, clients=args.clients, seconds_between=args.seconds_between, pre_stop=args.pre_stop
    )
    print(result.summary())
    return 0 if result.summary().endswith("PASS") else 1


if __name__ == "__main__":
    sys.exit(main())
