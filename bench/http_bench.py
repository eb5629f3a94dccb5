"""Serving benchmark, contenders side by side in one run, alternated: `make bench`.

Contenders (same request schema, same server settings, each on its own loopback port):
  service  this project's Bento, as `make serve` runs it
  noop     bench/noop_service.py: the framework's ceiling, no model call
  naive    bench/naive_service.py: the sklearn pipeline called per request (BentoML's sklearn example)

Throughput and errors come from wrk (Debian package); one-connection latency from a minimal
keep-alive HTTP/1.1 client on a raw socket timing each request (wrk 4.1's latency histogram
disagrees with its own request count on this machine, so its percentiles are not used; an HTTP
library such as requests adds ~0.5 ms of its own per request). Writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench import open_inference_bench
from bench.model_latency import measure as measure_in_process
from bench.model_latency import render as render_in_process
from bench.report import REPORT, write_section
from iris_classifier.bento import build as build_bento
from iris_classifier.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.servers import Server
from iris_classifier.store import ModelCard

ONE_SPECIES = "virginica"
ONE_FLOWER = json.dumps(EXAMPLE_FLOWERS[ONE_SPECIES])
BATCH = 10_000


def lua_script(body: str, directory: Path, name: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
    )
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": total,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection sending one prepared POST: what is timed is the server and loopback."""

    def __init__(self, url: str, body: bytes) -> None:
        parsed = urlsplit(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (
            f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body

    def post(self) -> tuple[int, bytes]:
        """Send the request; (status, body) of the answer, read to its Content-Length."""
        self.sock.sendall(self.request)
        data = bytearray()  # grows in place: no copy of the whole answer per chunk received
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv()
        head = bytes(data[:end])
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {head[:200]!r}")
        while len(data) < end + 4 + int(length.group(1)):
            data += self._recv()
        return int(head.split(b" ", 2)[1]), bytes(data[end + 4 :])

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def sequential_latency(url: str, body: bytes, count: int, answer_ok: Callable[[bytes], bool]) -> dict[str, float]:
    """p50 and p99 of `count` sequential requests on one keep-alive connection; a failure is a non-200
    or an answer `answer_ok` refuses."""
    client = KeepAliveClient(url, body)
    samples, failures = [], 0
    try:
        for _ in range(count):
            started = time.perf_counter()
            status, answer = client.post()
            samples.append((time.perf_counter() - started) * 1000)
            failures += status != 200 or not answer_ok(answer)
    finally:
        client.close()
    samples.sort()
    return {"p50_ms": samples[len(samples) // 2], "p99_ms": samples[int(len(samples) * 0.99)], "non_2xx": failures}


def one_connection_latency(url: str, count: int, *, classifies: bool) -> dict[str, float]:
    """`/classify` with ONE_FLOWER; where the contender classifies, a wrong species is a failure too."""

    def answer_ok(answer: bytes) -> bool:
        return not classifies or json.loads(answer)["species"] == ONE_SPECIES

    return sequential_latency(url, ONE_FLOWER.encode(), count, answer_ok)


def keep_posting(client: KeepAliveClient, seconds: float) -> tuple[int, int, float]:
    """Post the client's body back to back for `seconds`: (requests, non-200 answers, elapsed seconds)."""
    done, failures, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        status, _ = client.post()
        failures += status != 200
        done += 1
    return done, failures, time.perf_counter() - started


def batch_flowers(count: int, seed: int = 0) -> list[dict[str, float]]:
    """Flowers as measured (0.1 cm steps) anywhere in the training ranges: varied answers, not one repeated."""
    ranges = ModelCard.read().feature_ranges_cm
    rng = random.Random(seed)
    return [{name: round(rng.uniform(*ranges[name]), 1) for name in FEATURES} for _ in range(count)]


def batch_throughput(url: str, seconds: float) -> dict[str, float]:
    """Flowers/s over sequential requests of BATCH flowers on one keep-alive connection.

    Every answer's status is checked; the first one is parsed whole (one prediction per flower, each
    a known species), the others are not, so the client's JSON parsing is not timed.
    """
    client = KeepAliveClient(url, json.dumps({"flowers": batch_flowers(BATCH)}).encode())
    try:
        status, body = client.post()
        answers = json.loads(body)
        if status != 200 or len(answers) != BATCH or {a["species"] for a in answers} - set(SPECIES):
            raise RuntimeError(f"batch answered {status}: {body[:200]!r}")
        done, failures, elapsed = keep_posting(client, seconds)
    finally:
        client.close()
    return {"flowers_per_s": done * BATCH / elapsed, "requests": done, "non_2xx": failures}


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    import bentoml
    import onnxruntime
    import sklearn

    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "bentoml": bentoml.__version__,
        "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__,
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip(),
    }


def paired_ratios(values: list[float], baseline: list[float]) -> list[float]:
    """Round by round, a figure over the baseline's from the same round: both measured within a minute,
    so a drift of the shared machine's speed cancels out (a ratio of whole-run medians keeps it)."""
    return [mine / theirs for mine, theirs in zip(values, baseline, strict=True)]


def bench_parser(description: str | None, rounds: int, seconds: int) -> argparse.ArgumentParser:
    """The options every HTTP benchmark takes; a benchmark adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=int, default=seconds, help="per measure and round")
    parser.add_argument("--latency-requests", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=REPORT)
    return parser


def wrk_missing(tool: str) -> bool:
    """True, having said what to install, when wrk is not on PATH."""
    if shutil.which("wrk"):
        return False
    print(f"{tool}: wrk is missing; an admin installs it once: apt-get install -y wrk", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, rounds=2, seconds=8).parse_args(argv)
    if wrk_missing("bench"):
        return 2

    bento = build_bento()
    logs = Path(tempfile.mkdtemp(prefix="iris-bench-"))
    servers = {
        "service": Server(bento, log_path=logs / "service.log"),
        "noop": Server("bench.noop_service:NoopClassifier", log_path=logs / "noop.log"),
        "naive": Server("bench.naive_service:NaiveClassifier", log_path=logs / "naive.log"),
    }
    results: dict[str, dict] = {name: {"c1": [], "c32": [], "lat": []} for name in servers}
    batch: list[dict] = []
    v2_rounds: list[dict] = []  # the Open Inference Protocol (V2) rows, on the service's server
    try:
        cold = {}
        for name, server in servers.items():
            started = time.monotonic()
            server.start(wait_ready=120)
            cold[name] = time.monotonic() - started
        script = lua_script(ONE_FLOWER, logs, "one")
        for server in servers.values():  # warm-up, not recorded
            run_wrk(f"{server.url}/classify", script, 8, 2)
        for round_number in range(args.rounds):
            print(f"bench: round {round_number + 1} of {args.rounds}", flush=True)
            for connections in (1, 32):
                for name, server in servers.items():  # A B C, then A B C again next round
                    results[name][f"c{connections}"].append(
                        run_wrk(f"{server.url}/classify", script, connections, args.seconds)
                    )
            for name, server in servers.items():
                results[name]["lat"].append(
                    one_connection_latency(f"{server.url}/classify", args.latency_requests, classifies=name != "noop")
                )
            batch.append(batch_throughput(f"{servers['service'].url}/classify_batch", args.seconds))
            v2_rounds.append(
                open_inference_bench.measure_round(
                    servers["service"].url, species=ONE_SPECIES, seconds=args.seconds,
                    latency_requests=args.latency_requests, flowers=batch_flowers(BATCH),
                    run_wrk=run_wrk, lua_script=lua_script, logs=logs,
                )
            )  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    in_process = measure_in_process(rounds=args.rounds)
    report = render(results, batch, in_process, cold, machine(), args)
    report += open_inference_bench.render(v2_rounds, results["service"], batch)
    notes = Path(__file__).with_name("tuning.md")
    if notes.exists():
        report += "\n" + notes.read_text()
    write_section("http-bench", report, args.output)
    print(report)
    print(f"bench: wrote {args.output}")
    return 0


def median(values: list[float]) -> float:
    return statistics.median(values)


def render(results, batch, in_process, cold, info, args) -> str:
    def rps(name: str, key: str) -> float:
        return median([r["rps"] for r in results[name][key]])

    def errors(name: str) -> int:
        runs = results[name]["c1"] + results[name]["c32"]
        return sum(r["non_2xx"] + r["socket_errors"] for r in runs) + sum(r["non_2xx"] for r in results[name]["lat"])

    rows = []
    for name in results:
        lat = results[name]["lat"]
        rows.append(
            f"| {name} | {rps(name, 'c1'):.0f} | {rps(name, 'c32'):.0f} | "
            f"{median([x['p50_ms'] for x in lat]):.2f} | {median([x['p99_ms'] for x in lat]):.2f} | "
            f"{errors(name)} | {cold[name]:.1f} |"
        )
    ceiling = rps("service", "c32") / rps("noop", "c32")
    over_naive = rps("service", "c32") / rps("naive", "c32")
    over_naive_1 = rps("service", "c1") / rps("naive", "c1")
    p99 = median([x["p99_ms"] for x in results["service"]["lat"]])
    flowers = median([b["flowers_per_s"] for b in batch])
    batch_errors = sum(b["non_2xx"] for b in batch)
    all_errors = sum(errors(n) for n in results) + batch_errors

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return f"""# Serving benchmark

Made by `make bench` (`bench/http_bench.py`) on {dt.date.today().isoformat()}. One run, contenders
alternated (service, noop, naive; {args.rounds} rounds of {args.seconds} s per connection count), on one
2-core machine shared with the load generator. Compare ratios, not absolute numbers: the machine is
shared and noisy.

Machine: {info["cores"]} cores, {info["cpu"]}; Python {info["python"]}, BentoML {info["bentoml"]},
scikit-learn {info["scikit-learn"]}, onnxruntime {info["onnxruntime"]}, {info["wrk"]}.

## HTTP, one flower per request (`POST /classify`)

| contender | req/s, 1 connection | req/s, 32 connections | p50 ms, 1 conn | p99 ms, 1 conn | non-2xx + socket errors | cold start to /readyz (s) |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

req/s: wrk, median of rounds. p50/p99: {args.latency_requests} sequential requests per round on one
keep-alive connection (a raw-socket client; each answer's species checked), median of rounds.

## Batch (`POST /classify_batch`, {BATCH:,} flowers per request, one connection)

Each request carries 10,000 different flowers, drawn at 0.1 cm steps from the training ranges.

{flowers:,.0f} flowers/s end to end (median of rounds; {sum(b["requests"] for b in batch)} requests, {batch_errors} non-2xx).

## In-process model call

{render_in_process(in_process)}

## Targets

| target | measured | |
|---|---|---|
| `/classify` >= 0.85x the no-op ceiling at 32 connections | {ceiling:.2f}x | {verdict(ceiling >= 0.85)} |
| `/classify` >= 5x the naive per-request sklearn service at 32 connections | {over_naive:.1f}x (1 connection: {over_naive_1:.1f}x) | {verdict(over_naive >= 5)} |
| p99 <= 5 ms at one connection | {p99:.2f} ms | {verdict(p99 <= 5)} |
| batch >= 200,000 flowers/s | {flowers:,.0f} | {verdict(flowers >= 200_000)} |
| zero non-2xx responses | {all_errors} | {verdict(all_errors == 0)} |
"""


if __name__ == "__main__":
    raise SystemExit(main())
