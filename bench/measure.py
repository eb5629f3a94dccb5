"""The measuring tools every benchmark shares: wrk runs, a keep-alive client, latency and throughput loops,
the machine's description, per-round paired ratios and the common command line."""

from __future__ import annotations

import argparse
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
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench.report import REPORT
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.store import ModelCard

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


def on_off_row(label: str, on: list[float], off: list[float], unit: str, digits: int = 0) -> str:
    """A Markdown row of an A/B switch: the medians on and off, the median per-round ratio (its range), the rounds."""
    ratios = paired_ratios(on, off)
    ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    spread = ", ".join(f"{a:,.{digits}f}/{b:,.{digits}f}" for a, b in zip(on, off, strict=True))
    cells = [f"{statistics.median(on):,.{digits}f} {unit}", f"{statistics.median(off):,.{digits}f} {unit}", ratio]
    return f"| {label} | " + " | ".join([*cells, spread]) + " |"


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
