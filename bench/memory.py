"""Memory in the production image: idle, and per 10,000-flower batch in flight: `make bench-memory`.

    python -m bench.memory [--seconds 8] [--concurrency 1 4 16 32] [--baseline IMAGE] [--record]

Each image runs under the production pod's constraints (bench/flood.py: the render's limits, read-only root,
its user, a tmpfs per volume). Idle: the cgroup's anonymous memory and each process's resident memory once
the service is ready and its web UI built. In flight: K clients post the same 10,000-flower batch back to
back on one route for a few seconds while the cgroup is sampled every 50 ms, K rising in one fresh container
per route and setting; the peak anonymous memory over idle (a high-water mark: the allocator keeps what it
took), against K, gives the memory per batch in flight (a least-squares slope; its intercept is what any
load adds once, e.g. the executing batch and the prediction log's writer). Measured twice: with admission
off (every batch is read and parsed as it comes and waits for the model with its body and rows; V2 runs in
a thread pool) and as deployed (admission on: one executes per CPU, the others wait with their body
unread). The prediction log's bytes per flower come from its folder (a tmpfs, so memory too).
`--baseline IMAGE` measures another image (an older commit's) the same way, after this one, for a
before/after. `--record` writes the section `bench-memory` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.flood import V2_PATH, TimedClient, batch_bodies, cgroup_reader, mib, production_constraints
from bench.report import REPORT, write_section
from ops import k8s

ROUTES = ("/classify_batch", V2_PATH)
OOM_KILLED = -1  # in place of a peak: the OOM killer ended the worker at this K


@dataclass
class ImageMemory:
    image: str
    idle_anon: int = 0
    idle_processes: dict[str, int] = field(default_factory=dict)  # "supervisor"/"worker" -> RSS bytes
    # (admission setting, route) -> [(K, peak anon over idle in bytes, batches answered)]
    in_flight: dict[tuple[str, str], list[tuple[int, int, int]]] = field(default_factory=dict)
    log_bytes_per_flower: float | None = None


def process_rss(container: str) -> dict[str, int]:
    """Resident memory of the server's processes in the container: the supervisor and the worker(s)."""
    script = (
        "for p in /proc/[0-9]*; do r=$(awk '/VmRSS/{print $2}' $p/status 2>/dev/null); "
        '[ -n "$r" ] && echo "$r $(tr "\\0" " " < $p/cmdline | cut -c1-120)"; done'
    )
    out = subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True).stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        kib, _, command = line.partition(" ")
        if not kib.isdigit():
            continue
        if "_bentoml_impl.worker" in command:
            found["worker"] = found.get("worker", 0) + int(kib) * 1024
        elif "bentoml serve" in command:
            found["supervisor"] = int(kib) * 1024
    return found


def hammer(url: str, body: bytes, clients: int, seconds: float) -> int:
    """`clients` keep-alive connections posting `body` back to back; the number of 200 answers (a connection the
    server drops ends that client: the caller asks the cgroup whether the OOM killer was the cause)."""
    answered = [0] * clients

    def client(number: int) -> None:
        connection = TimedClient(url, body)
        connection.sock.settimeout(120)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                status, head, _ = connection.post_with_head()
                if status == 200:
                    answered[number] += 1
                elif b"retry-after" in head.lower():
                    time.sleep(0.2)
        except OSError:
            return
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered)


def peak_anon_while(sample: Any, work: Any) -> tuple[int, Any]:
    """The highest anonymous memory sampled (every 50 ms) while `work()` runs, and its result."""
    peak, done = 0, threading.Event()

    def sampler() -> None:
        nonlocal peak
        started = time.monotonic()
        while not done.is_set():
            now = sample(started)
            if now is not None:
                peak = max(peak, now.anon)
            time.sleep(0.05)

    thread = threading.Thread(target=sampler)
    thread.start()
    try:
        result = work()
    finally:
        done.set()
        thread.join()
    return peak, result


def measure_image(
    image: str, *, concurrency: list[int], seconds: float, memory: str | None, env: dict[str, str] | None = None
) -> ImageMemory:
    """Per admission setting and route, a fresh container: idle, then K = each of `concurrency` in turn (rising);
    the allocator keeps what it took, so each K's figure is the high-water mark over idle."""
    native, v2, _ = batch_bodies()
    bodies = {"/classify_batch": native, V2_PATH: v2}
    found = ImageMemory(image=image)
    for setting, admission in (("off", {"IRIS_ADMISSION": "off"}), ("on", {})):
        for route, body in bodies.items():
            constraints = production_constraints(memory)
            constraints.image = image
            constraints.env = {**constraints.env, **admission, **(env or {})}
            name = f"iris-flood-memory-{os.getpid()}"
            port = k8s.free_port()
            with k8s.running_pod(constraints, name=name, port=port) as url:
                k8s.wait_ready(url, timeout=180, container=name)
                for warm in bodies:  # the first answers of both routes, and the UI built in the background
                    requests.post(f"{url}{warm}", data=bodies[warm], headers={"Content-Type": "application/json"},
                                  timeout=120)  # fmt: skip
                time.sleep(3)
                sample, _, oom_kills = cgroup_reader(name)
                idle = sample(time.monotonic()).anon
                if setting == "off" and route == "/classify_batch":
                    found.idle_anon = idle
                    found.idle_processes = process_rss(name)
                rows = found.in_flight.setdefault((setting, route), [])
                for clients in concurrency:
                    target = f"{url}{route}"
                    peak, answered = peak_anon_while(
                        sample, lambda target=target, body=body, clients=clients: hammer(target, body, clients, seconds)
                    )
                    if oom_kills():  # the worker was killed (and restarted): no figure, and no higher K
                        rows.append((clients, OOM_KILLED, answered))
                        print(f"bench-memory: {image} admission {setting} {route} x{clients}: OOM-killed", flush=True)
                        break
                    rows.append((clients, max(0, peak - idle), answered))
                    print(f"bench-memory: {image} admission {setting} {route} x{clients}: "
                          f"+{mib(peak - idle)} MiB anon over idle, {answered} batches", flush=True)  # fmt: skip
                if setting == "on" and route == "/classify_batch":
                    folder = f"{constraints.env['IRIS_MONITOR_DIR']}/iris_predictions/data"
                    script = f"cat {folder}/data.*.log* | wc -c; cat {folder}/data.*.log* | wc -l"
                    out = subprocess.run(["docker", "exec", name, "sh", "-c", script], capture_output=True, text=True)
                    size, lines = (int(value) for value in out.stdout.split()[:2])
                    found.log_bytes_per_flower = size / lines if lines else None
    return found


def slope(points: list[tuple[int, int, int]]) -> tuple[float, float]:
    """Least squares of peak over K: (bytes per batch in flight, bytes added by any load)."""
    points = [point for point in points if point[1] != OOM_KILLED]
    if len(points) < 2:
        return 0.0, float(points[0][1]) if points else 0.0
    xs = [float(k) for k, _, _ in points]
    ys = [float(peak) for _, peak, _ in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    per = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0
    return per, mean_y - per * mean_x


def render(results: list[ImageMemory], command: str, concurrency: list[int], seconds: float) -> str:
    lines = [
        "## Memory in the production image (`make bench-memory`)",
        "",
        f"`{command}`, {dt.date.today().isoformat()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on 2 shared cores. Each image under the production pod's constraints (768 MiB, 1 CPU, read-only root, "
        f"UID 10001, tmpfs volumes). Idle: once ready, the web UI built. In flight: K = "
        f"{', '.join(map(str, concurrency))} clients posting the same 10,000-flower batch back to back for "
        f"{seconds:g} s each; the peak anonymous memory of the pod's cgroup over the level before, against K "
        "(least-squares slope = per batch in flight; intercept = what any load adds once).",
        "",
        "| image | idle: cgroup anon MiB | supervisor / worker RSS MiB | route | admission | MiB per 10,000-flower "
        "batch in flight (slope) | + once MiB | peaks over idle by K (MiB) |",
        "|---|---:|---|---|---|---:|---:|---|",
    ]
    for number, result in enumerate(results):
        processes = f"{mib(result.idle_processes.get('supervisor'))} / {mib(result.idle_processes.get('worker'))}"
        for (setting, route), points in result.in_flight.items():
            if number and setting == "on":
                continue  # a baseline before admission control: both settings ran the same server
            setting = setting if not number else "none (baseline)"
            per, once = slope(points)
            peaks = ", ".join(
                f"{k}: **OOM-killed**" if peak == OOM_KILLED else f"{k}: {peak / 2**20:.0f}" for k, peak, _ in points
            )
            killed = any(peak == OOM_KILLED for _, peak, _ in points)
            fitted = "- | -" if killed else f"{per / 2**20:.1f} | {once / 2**20:.0f}"
            lines.append(
                f"| `{result.image.split(':')[-1][:12]}` | {mib(result.idle_anon)} | {processes} | `{route}` | "
                f"{setting} | {fitted} | {peaks} |"
            )
    logged = [r.log_bytes_per_flower for r in results if r.log_bytes_per_flower]
    if logged:
        lines += [
            "",
            f"The prediction log: {logged[0]:.0f} bytes of JSON line per flower; on a tmpfs (Docker's `--tmpfs`, an "
            "`emptyDir` with `medium: Memory`) those bytes are memory, so its files are held to an eighth of the "
            "limit there (96 MiB of 768 MiB) and the admission budget leaves them out.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--image", default=None, help="image (default: the production render's, this commit)")
    parser.add_argument("--baseline", default=None, help="an older image, measured the same way after this one")
    parser.add_argument("--memory", default=None, help="memory limit (default: the production render's)")
    parser.add_argument("--record", action="store_true")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for the measured image only (not the "
        "baseline), e.g. IRIS_SHADOW=<model tag>: the same image with a shadow model, against --baseline of itself",
    )
    args = parser.parse_args(argv)
    image = args.image or production_constraints(None).image
    images = [image] + ([args.baseline] if args.baseline else [])
    for name in images:
        if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0:
            print(f"bench-memory: no image {name}; run `make image` first", file=sys.stderr)
            return 2
    extra = dict(item.split("=", 1) for item in args.env)
    results = [
        measure_image(
            name, concurrency=args.concurrency, seconds=args.seconds, memory=args.memory, env=extra if at == 0 else None
        )
        for at, name in enumerate(images)
    ]
    text = render(results, "python -m bench.memory " + " ".join(argv or sys.argv[1:]), args.concurrency, args.seconds)
    print(text)
    if args.record:
        write_section("bench-memory", text, REPORT)
        print(f"bench-memory: wrote the section 'bench-memory' of {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
