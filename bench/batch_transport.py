"""10,000 flowers per request over gRPC raw contents and over REST binary tensors, alternated on one served source
service (issue #35's ratio, in ~2 minutes instead of `make bench`'s 15+): `make bench-batch-transport`.

Each round runs both routes for `seconds` with 4 clients (`make bench`'s client code: bench/grpc_bench.py and
bench/open_inference_bench.py), the order swapped every round, and prints flowers/s, the CPU each request cost the
client (this process) and the served worker (every thread of it: the gRPC core's too), and the 1-minute load
average. The ratio gRPC / REST is taken round by round. `--no-prediction-log` serves with IRIS_PREDICTION_LOG=0:
the log's writer is most of the worker's CPU per request and the same for both routes, so without it what differs
between the two transports shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests

from bench import grpc_bench
from bench.open_inference_bench import PATH, BinaryClient, binary_body, concurrent_throughput, species_of
from iris_classifier.harness.servers import Server

FLOWERS = 10_000


def batch_rows(seed: int = 0) -> np.ndarray:
    """FLOWERS rows of cm, one decimal each, within the measurement rules."""
    return np.round(np.random.default_rng(seed).uniform(0.5, 7.0, size=(FLOWERS, 4)), 1)


def worker_process(server: Server) -> psutil.Process:
    """The served worker: the one child of `bentoml serve` that answers (the server has one worker)."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    return max(children, key=lambda child: child.cpu_times().user) if children else psutil.Process(server.process.pid)


def wait_for_lookup_table(server: Server, timeout: float = 120.0) -> None:
    """Until the served model answers from its lookup table (built in the background after readiness): before
    that the ONNX session answers, several times slower, and the first round would measure the start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{server.url}/model", timeout=10).json().get("lookup_table_cells"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"bench: no lookup table after {timeout} s:\n{server.log_tail()}")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def run_route(route: str, server: Server, rows: np.ndarray, seconds: float) -> dict[str, Any]:
    """`make bench`'s 10,000-flower measure of one route: flowers/s, requests, and the species of an answer."""
    if route == "grpc_raw":
        return grpc_bench.batch(server.grpc_target, rows, seconds)
    body, json_length = binary_body(rows.tolist())
    result = concurrent_throughput(lambda: BinaryClient(server.url + PATH, body, json_length), seconds, FLOWERS)
    return {**result, "species": species_of(result["first"], binary=True) if result["first"] else []}


def measure(route: str, server: Server, rows: np.ndarray, seconds: float, worker: psutil.Process) -> dict[str, Any]:
    """Flowers/s of one route, with client and worker CPU ms per request."""
    client, served = time.process_time(), cpu_seconds(worker)
    result = run_route(route, server, rows, seconds)
    answered = max(1, result["requests"])
    return {
        "flowers_per_s": result["flowers_per_s"],
        "client_ms": (time.process_time() - client) * 1000 / answered,
        "worker_ms": (cpu_seconds(worker) - served) * 1000 / answered,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5, help="per route and round")
    parser.add_argument("--no-prediction-log", action="store_true", help="serve with IRIS_PREDICTION_LOG=0")
    args = parser.parse_args(argv)
    env = {"IRIS_MONITOR_DIR": tempfile.mkdtemp(prefix="iris-bench-log-")}
    if args.no_prediction_log:
        env["IRIS_PREDICTION_LOG"] = "0"
    log = Path(tempfile.mkdtemp(prefix="iris-bench-")) / "service.log"
    server = Server("service:IrisClassifier", env=env, log_path=log).start()
    try:
        wait_for_lookup_table(server)
        rows = batch_rows()
        worker = worker_process(server)
        warm = {route: run_route(route, server, rows, args.seconds) for route in ("grpc_raw", "rest_binary")}
        if warm["grpc_raw"]["species"] != warm["rest_binary"]["species"] or not warm["grpc_raw"]["species"]:
            raise RuntimeError("bench: gRPC raw and REST binary answered different species for the same flowers")
        ratios = []
        for number in range(args.rounds):
            load = os.getloadavg()[0]
            order = ("grpc_raw", "rest_binary") if number % 2 == 0 else ("rest_binary", "grpc_raw")
            got = {route: measure(route, server, rows, args.seconds, worker) for route in order}
            ratios.append(got["grpc_raw"]["flowers_per_s"] / got["rest_binary"]["flowers_per_s"])
            shown = "  ".join(
                f"{route} {m['flowers_per_s']:>11,.0f}/s (CPU per request: client {m['client_ms']:.2f} ms, "
                f"worker {m['worker_ms']:.2f} ms)"
                for route, m in got.items()
            )
            print(f"round {number}: {shown}  ratio {ratios[-1]:.2f}  load {load:.1f}->{os.getloadavg()[0]:.1f}")
        print(
            f"gRPC raw / REST binary: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) over "
            f"{args.rounds} rounds of {args.seconds} s, prediction log {'off' if args.no_prediction_log else 'on'}"
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
