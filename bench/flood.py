"""The flood: this commit's image under the production pod's constraints, hammered with maximum-size batches.

    python -m bench.flood [--seconds 60] [--clients 24] [--memory 768Mi] [--env IRIS_ADMISSION=off] [--record]

The container runs as `make k8s-pod-check` runs it (the production render's limits, read-only root, its user,
a tmpfs per volume; `--memory` overrides the limit). `--clients` clients post 10,000-flower batches back to back,
half to /classify_batch (a JSON object per flower) and half to V2 infer ([10000, 4] FP64, nested rows); a
refused client waits the Retry-After it was given. Beside them a light client posts one flower at a time
to /classify, each answer timed. The container's cgroup is sampled for its memory (its peak, and what it
holds: anonymous memory, files in memory).

Pass: the container still runs and was never OOM-killed; every answer is a 200 with the right species (a
batch answer is byte-identical to the one checked before the flood) or a 503/429 with Retry-After; no
connection was dropped; the light client's p99 is at most `--light-p99-ms`; /classify answers right after.
With IRIS_ADMISSION=off the same flood shows what shedding prevents (the OOM kill). `--record` writes the
envelope into docs/benchmarks.md (section `flood`). tests/overload runs a short version; `make flood-test`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.measure import KeepAliveClient, batch_flowers
from bench.report import REPORT, write_section
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MODEL_NAME, SPECIES
from ops import k8s

BATCH = 10_000
V2_PATH = f"/v2/models/{MODEL_NAME}/infer"
SHED_STATUSES = (503, 429)


def container_name() -> str:
    return f"iris-flood-{os.getpid()}"


# ---- the bodies, and what their answers must say ----


def batch_bodies(seed: int = 7) -> tuple[bytes, bytes, list[str]]:
    """The same 10,000 flowers as a /classify_batch body and a V2 infer body, and their species by the model
    in this project's store (the one the image serves)."""
    from iris_classifier.model.pipeline import Predictor
    from iris_classifier.model.store import model_tag_to_serve, stored_model

    flowers = batch_flowers(BATCH, seed=seed)
    rows = [[flower[name] for name in FEATURES] for flower in flowers]
    native = json.dumps({"flowers": flowers}).encode()
    v2 = json.dumps(
        {"inputs": [{"name": "measurements_cm", "shape": [BATCH, len(FEATURES)], "datatype": "FP64", "data": rows}]}
    ).encode()
    import numpy as np

    predictor = Predictor.from_dir(Path(stored_model(model_tag_to_serve()).path))
    species = [SPECIES[index] for index in predictor.predict_proba(np.array(rows)).argmax(axis=1)]
    return native, v2, species


def answered_species(route: str, answer: bytes) -> list[str]:
    document = json.loads(answer)
    if route == "/classify_batch":
        return [prediction["species"] for prediction in document]
    (outputs,) = [output for output in document["outputs"] if output["name"] == "species"]
    return outputs["data"]


# ---- the clients (each in its own process: the clients' GIL never delays the light client's timing) ----


def _retry_after(head: bytes) -> float | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return float(value.strip())
    return None


class TimedClient(KeepAliveClient):
    """The benchmark's keep-alive client, also returning the answer's head (for Retry-After)."""

    def closed_by_server(self) -> bool:
        """Whether the server closed this idle connection (its keep-alive timeout): HTTP clients check this before
        they reuse a pooled connection (urllib3's is_connection_dropped), and open a new one."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def post_with_head(self) -> tuple[int, bytes, bytes]:
        self.sock.sendall(self.request)
        data = bytearray()
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv()
        head = bytes(data[:end])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(data) < end + 4 + length:
            data += self._recv()
        return int(head.split(b" ", 2)[1]), head, bytes(data[end + 4 : end + 4 + length])


def batch_clients(url: str, route: str, body: bytes, digest: str, clients: int, seconds: float, queue: Any) -> None:
    """`clients` threads posting `body` to `route` back to back; puts one tally per thread on `queue`."""

    def client() -> None:
        tally: dict[str, Any] = {"route": route, "ok": 0, "shed": 0, "wrong": 0, "bad_status": {}, "errors": []}
        deadline = time.monotonic() + seconds
        connection = None
        try:
            while time.monotonic() < deadline:
                if connection is not None and connection.closed_by_server():
                    connection.close()
                    connection = None
                if connection is None:
                    connection = TimedClient(f"{url}{route}", body)
                    connection.sock.settimeout(120)
                status, head, answer = connection.post_with_head()
                if status == 200:
                    tally["ok"] += 1
                    tally["wrong"] += hashlib.sha1(answer).hexdigest() != digest
                elif status in SHED_STATUSES and (wait := _retry_after(head)) is not None:
                    tally["shed"] += 1
                    time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
                else:
                    tally["bad_status"][str(status)] = tally["bad_status"].get(str(status), 0) + 1
        except (OSError, ValueError, StopIteration) as error:
            tally["errors"].append(f"{type(error).__name__}: {error}")
        finally:
            if connection is not None:
                connection.close()
        queue.put(tally)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def light_client(url: str, seconds: float, pause: float, queue: Any) -> None:
    """One flower at a time to /classify (the three example flowers in turn), each answer timed and checked."""
    tally: dict[str, Any] = {"ms": [], "wrong": 0, "shed": 0, "bad_status": {}, "errors": []}
    bodies = [(species, json.dumps(flower).encode()) for species, flower in EXAMPLE_FLOWERS.items()]
    clients = [(species, KeepAliveClient(f"{url}/classify", body)) for species, body in bodies]
    for _, client in clients:
        client.sock.settimeout(60)
    deadline, number = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < deadline:
            species, client = clients[number % len(clients)]
            number += 1
            started = time.perf_counter()
            status, answer = client.post()
            tally["ms"].append((time.perf_counter() - started) * 1000)
            if status == 200:
                tally["wrong"] += json.loads(answer)["species"] != species
            elif status in SHED_STATUSES:
                tally["shed"] += 1
            else:
                tally["bad_status"][str(status)] = tally["bad_status"].get(str(status), 0) + 1
            time.sleep(pause)
    except (OSError, ValueError) as error:
        tally["errors"].append(f"{type(error).__name__}: {error}")
    finally:
        for _, client in clients:
            client.close()
    queue.put(tally)


# ---- the container and its memory ----


@dataclass
class MemorySample:
    seconds: float
    usage: int
    working_set: int
    anon: int
    in_memory_files: int  # shmem: tmpfs files (the prediction log)


def cgroup_reader(container: str) -> Any:
    """A function reading the container's memory cgroup (v1 or v2), from the host if it can, else by docker exec."""
    full_id = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True
    ).stdout.strip()
    candidates = [
        (Path(f"/sys/fs/cgroup/memory/docker/{full_id}"), 1),
        (Path(f"/sys/fs/cgroup/system.slice/docker-{full_id}.scope"), 2),
        (Path(f"/sys/fs/cgroup/docker/{full_id}"), 2),
    ]
    found = next(((path, v) for path, v in candidates if (path / "memory.stat").exists()), None)

    def read(name: str) -> str:
        if found:
            return (found[0] / name).read_text()
        inside = "/sys/fs/cgroup/memory/" if version == 1 else "/sys/fs/cgroup/"
        command = ["docker", "exec", container, "cat", inside + name]
        return subprocess.run(command, capture_output=True, text=True).stdout

    if found:
        version = found[1]
    else:
        probe = subprocess.run(["docker", "exec", container, "test", "-d", "/sys/fs/cgroup/memory"])
        version = 1 if probe.returncode == 0 else 2

    def sample(started: float) -> MemorySample | None:
        try:
            stat = dict(line.split(" ", 1) for line in read("memory.stat").splitlines() if " " in line)
            usage = int(read("memory.usage_in_bytes" if version == 1 else "memory.current"))
        except (OSError, ValueError):
            return None
        inactive = int(stat.get("total_inactive_file" if version == 1 else "inactive_file", 0))
        anon = int(stat.get("total_rss" if version == 1 else "anon", 0))
        shmem = int(stat.get("total_shmem" if version == 1 else "shmem", 0))
        return MemorySample(time.monotonic() - started, usage, usage - inactive, anon, shmem)

    def peak() -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(read("memory.max_usage_in_bytes" if version == 1 else "memory.peak"))
        return None

    def oom_kills() -> int:
        """Processes the kernel's OOM killer ended in the container (a killed worker is restarted by BentoML's
        supervisor, so the container runs on and Docker's State.OOMKilled stays false)."""
        text = read("memory.oom_control" if version == 1 else "memory.events")
        counts = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
        return int(counts.get("oom_kill", 0))

    return sample, peak, oom_kills


def container_state(container: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", "-f", "{{json .State}}", container], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def admission_metrics(url: str) -> dict[str, float]:
    """The shed counters, admission gauges and a shadow's counters from /metrics (empty when it does not answer)."""
    try:
        text = requests.get(f"{url}/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    wanted = ("iris_requests_shed_total", "iris_admission_", "iris_prediction_log_dropped_total", "iris_shadow_")
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(wanted)
    }


# ---- the run ----


@dataclass
class FloodResult:
    image: str
    memory_limit: int
    env: dict[str, str]
    clients: int
    seconds: float
    routes: dict[str, dict[str, Any]]
    light: dict[str, Any]
    idle: MemorySample | None
    peak_usage: int
    peak_sample: MemorySample | None
    state: dict[str, Any]
    oom_kills: int
    after_ok: bool
    metrics: dict[str, float] = field(default_factory=dict)
    budget_line: str = ""
    docker_args: list[str] = field(default_factory=list)
    load_average: str = ""

    @property
    def oom_killed(self) -> bool:
        """Docker's OOMKilled (the container's main process), or any process of it killed by the OOM killer."""
        return bool(self.state.get("OOMKilled")) or self.oom_kills > 0

    def failures(self, light_p99_ms: float) -> list[str]:
        """What breaks the pass condition (empty: passed)."""
        problems = []
        if self.oom_killed:
            problems.append(f"OOM-killed (Docker's OOMKilled {self.state.get('OOMKilled')}, {self.oom_kills} kills)")
        if not self.state.get("Running"):
            problems.append(f"the container is not running (state {self.state.get('Status')})")
        for route, tally in self.routes.items():
            if tally["wrong"]:
                problems.append(f"{route}: {tally['wrong']} answers with a wrong species")
            if tally["bad_status"]:
                problems.append(f"{route}: answers other than 200 or 503/429 with Retry-After: {tally['bad_status']}")
            if tally["errors"]:
                problems.append(f"{route}: connections dropped: {tally['errors'][:3]}")
        light = self.light
        if light["wrong"] or light["bad_status"] or light["errors"]:
            problems.append(
                f"light client: {light['wrong']} wrong, other statuses {light['bad_status']}, errors {light['errors']}"
            )
        if light["p99_ms"] is None or light["p99_ms"] > light_p99_ms:
            problems.append(f"light client p99 {light['p99_ms']} ms is above {light_p99_ms:g} ms")
        if not self.after_ok:
            problems.append("/classify did not answer right after the flood")
        return problems


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def production_constraints(memory: str | None) -> k8s.PodConstraints:
    """The production render's container constraints (this commit's image), with the memory limit overridden."""
    work = Path(tempfile.mkdtemp(prefix="iris-flood-render-"))
    render = k8s.render("production", out_dir=work, record=work / "no-record.json")
    constraints = k8s.pod_constraints(k8s.documents(render))
    if memory:
        constraints.memory_bytes = k8s._bytes(memory)
    return constraints


def flood(
    constraints: k8s.PodConstraints,
    *,
    clients: int,
    seconds: float,
    env: dict[str, str] | None = None,
    name: str | None = None,
    light_pause: float = 0.01,
) -> FloodResult:
    """Run the image under `constraints` (plus `env`), flood it, and say what happened; the container is removed."""
    name = name or container_name()
    constraints.env = {**constraints.env, **(env or {})}
    native, v2, species = batch_bodies()
    port = k8s.free_port()
    with k8s.running_pod(constraints, name=name, port=port) as url:
        k8s.wait_ready(url, timeout=180, container=name)
        digests = {}
        for route, body in (("/classify_batch", native), (V2_PATH, v2)):  # checked once, then compared
            answer = requests.post(f"{url}{route}", data=body, headers={"Content-Type": "application/json"}, timeout=60)
            if answer.status_code != 200 or answered_species(route, answer.content) != species:
                raise k8s.CheckFailed(f"flood: {route} answered wrong before the flood: {answer.text[:300]}")
            digests[route] = hashlib.sha1(answer.content).hexdigest()
        time.sleep(2)  # the web UI is built in the background 1 s after ready: part of the idle figure
        sample, peak, oom_kills = cgroup_reader(name)
        started = time.monotonic()
        idle = sample(started)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        half = clients // 2
        processes = [
            context.Process(target=batch_clients, args=(url, "/classify_batch", native, digests["/classify_batch"],
                                                        clients - half, seconds, queue)),
            context.Process(target=batch_clients, args=(url, V2_PATH, v2, digests[V2_PATH], half, seconds, queue)),
            context.Process(target=light_client, args=(url, seconds, light_pause, queue)),
        ]  # fmt: skip
        for process in processes:
            process.start()
        samples = []
        while any(process.is_alive() for process in processes):
            if (now := sample(started)) is not None:
                samples.append(now)
            time.sleep(0.25)
        tallies = [queue.get(timeout=30) for _ in range(clients + 1)]
        for process in processes:
            process.join(timeout=30)
        time.sleep(1)
        state = container_state(name)
        kills = oom_kills() if state.get("Running") else 0
        after_ok = False
        with contextlib.suppress(requests.RequestException, ValueError, KeyError):
            answer = requests.post(f"{url}/classify", json=EXAMPLE_FLOWERS["setosa"], timeout=10)
            after_ok = answer.status_code == 200 and answer.json()["species"] == "setosa"
        metrics = admission_metrics(url) if state.get("Running") else {}
        peak_usage = peak() or max((s.usage for s in samples), default=0)
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        budget = next((line for line in (logs.stdout + logs.stderr).splitlines() if "admission:" in line), "")
    routes: dict[str, dict[str, Any]] = {}
    light: dict[str, Any] = {}
    for tally in tallies:
        if "route" not in tally:
            light = tally
            continue
        merged = routes.setdefault(tally["route"], {"ok": 0, "shed": 0, "wrong": 0, "bad_status": {}, "errors": []})
        for key in ("ok", "shed", "wrong"):
            merged[key] += tally[key]
        for status, count in tally["bad_status"].items():
            merged["bad_status"][status] = merged["bad_status"].get(status, 0) + count
        merged["errors"] += tally["errors"]
    times = light.pop("ms", [])
    light.update(
        requests=len(times),
        p50_ms=percentile(times, 0.5),
        p99_ms=percentile(times, 0.99),
        max_ms=max(times, default=None),
    )
    return FloodResult(
        image=constraints.image,
        memory_limit=constraints.memory_bytes,
        env=env or {},
        clients=clients,
        seconds=seconds,
        routes=routes,
        light=light,
        idle=idle,
        peak_usage=peak_usage,
        peak_sample=max(samples, key=lambda s: s.usage, default=None),
        state=state,
        oom_kills=kills,
        after_ok=after_ok,
        metrics=metrics,
        budget_line=budget[budget.index("admission:") :] if "admission:" in budget else "",
        docker_args=constraints.docker_args(port=port),
        load_average=" ".join(f"{load:.1f}" for load in os.getloadavg()),
    )


# ---- the report ----


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def render(results: list[FloodResult], command: str) -> str:
    rows = []
    for result in results:
        batches = sum(tally["ok"] for tally in result.routes.values())
        shed = sum(tally["shed"] for tally in result.routes.values())
        total = batches + shed
        light = result.light
        verdict = "OOM-killed" if result.oom_killed else ("ran" if result.state.get("Running") else "stopped")
        setting = ", ".join(f"{key}={value}" for key, value in result.env.items()) or "as deployed"
        idle, at_peak = result.idle, result.peak_sample
        rows.append(
            f"| {mib(result.memory_limit)} MiB | {setting} | {verdict} | {mib(idle.usage if idle else None)} "
            f"| {mib(result.peak_usage)} | {mib(at_peak.anon if at_peak else None)} / "
            f"{mib(at_peak.in_memory_files if at_peak else None)} "
            f"| {batches:,} ({batches * BATCH / result.seconds:,.0f} flowers/s) | {shed:,} of {total:,} "
            f"| {light['requests']:,}: {_ms(light['p50_ms'])} / {_ms(light['p99_ms'])} "
            f"| {len(result.failures(float('inf')))} |"
        )
    first = results[0]
    budgets = "\n".join(f"- {result.budget_line}" for result in results if result.budget_line)
    return "\n".join(
        [
            "## Overload: the flood at the pod's own limits (`make flood-test`, `python -m bench.flood`)",
            "",
            f"`{command}`, {dt.date.today().isoformat()}: the image `{first.image}` under the production pod's "
            f"constraints (`--read-only --user 10001:10001 --cpus 1`, a tmpfs per volume, the memory limit of "
            f"the row), {first.clients} clients posting 10,000-flower batches back to back for "
            f"{first.seconds:.0f} s (half to `/classify_batch`, half to V2 infer; a refused client waits its "
            f"Retry-After) and a light client posting one flower at a time to `/classify`. Load average at the "
            f"end: {', '.join(result.load_average for result in results)} (2 cores, shared).",
            "",
            "| memory limit | setting | container | idle MiB | peak MiB | at peak: anon / files in memory MiB "
            "| batches answered 200 | batches shed (503 + Retry-After) | light `/classify`: requests, p50 / p99 ms "
            "| failed checks |",
            "|---|---|---|---:|---:|---|---|---|---|---:|",
            *rows,
            "",
            "Budgets the service derived at start (its log):",
            "",
            budgets or "- (none logged)",
        ]
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--memory", action="append", default=None, help="memory limit(s), e.g. 768Mi (repeatable)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the container (repeatable)")
    parser.add_argument("--image", default=None, help="image (default: the production render's, this commit)")
    parser.add_argument("--light-p99-ms", type=float, default=300.0)
    parser.add_argument("--off-too", action="store_true", help="also run each limit with IRIS_ADMISSION=off")
    parser.add_argument("--record", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    runs = [(memory, env) for memory in (args.memory or [None])]
    if args.off_too:
        runs += [(memory, {**env, "IRIS_ADMISSION": "off"}) for memory in (args.memory or [None])]
    results, status = [], 0
    for memory, run_env in runs:
        constraints = production_constraints(memory)
        if args.image:
            constraints.image = args.image
        limit = mib(constraints.memory_bytes)
        print(f"flood: {constraints.image}, {limit} MiB, {run_env or 'as deployed'}", flush=True)
        result = flood(constraints, clients=args.clients, seconds=args.seconds, env=run_env)
        results.append(result)
        problems = result.failures(args.light_p99_ms)
        summary = {key: value for key, value in asdict(result).items() if key not in ("docker_args",)}
        print(json.dumps(summary, indent=1, default=str), flush=True)
        print("flood: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)), flush=True)
        status = status or (1 if problems and run_env.get("IRIS_ADMISSION") != "off" else 0)
    if args.json:
        args.json.write_text(json.dumps([asdict(result) for result in results], indent=1, default=str))
    if args.record:
        command = "python -m bench.flood " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("flood", render(results, command.strip()), REPORT)
        print(f"flood: wrote the section 'flood' of {REPORT}")
    return status


if __name__ == "__main__":
    sys.exit(main())
