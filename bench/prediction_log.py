"""What the prediction log costs `/classify`: the Bento served twice, log on and off, alternated: `make bench-log`.

Both contenders are this commit's Bento with the same settings, each on its own loopback port and BentoML
home; `IRIS_PREDICTION_LOG=0` turns the log off for one of them. Throughput from wrk at 1 and 32
connections, one-connection p50/p99 from the raw keep-alive client, the 10,000-flower batch rate; the
rounds alternate on/off so the shared machine's noise falls on both. Replaces the "Prediction log"
section of docs/benchmarks.md (between its markers) and leaves the rest of the file alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.measure import ONE_FLOWER as FLOWER
from bench.measure import (
    batch_throughput,
    bench_parser,
    lua_script,
    machine,
    on_off_row,
    one_connection_latency,
    paired_ratios,
    run_wrk,
    wrk_missing,
)
from bench.report import write_section
from iris_classifier.data.production_log import data_files
from iris_classifier.harness.servers import Server
from iris_classifier.registry.bento import build as build_bento


def measure(rounds: int, seconds: int, latency_requests: int) -> tuple[dict, int]:
    bento = build_bento()
    work = Path(tempfile.mkdtemp(prefix="iris-bench-log-"))
    servers = {
        "log on": Server(bento, env={"IRIS_MONITOR_DIR": str(work / "log")}, log_path=work / "on.log"),
        "log off": Server(
            bento, env={"IRIS_PREDICTION_LOG": "0", "IRIS_MONITOR_DIR": str(work / "off")}, log_path=work / "off.log"
        ),
    }
    results = {name: {"c1": [], "c32": [], "p50": [], "p99": [], "batch": [], "errors": 0} for name in servers}
    try:
        for server in servers.values():
            server.start(wait_ready=180)
        script = lua_script(FLOWER, work, "one")
        for server in servers.values():
            run_wrk(f"{server.url}/classify", script, 8, 2)  # warm-up, not recorded
        for number in range(rounds):
            print(f"bench-log: round {number + 1} of {rounds}", flush=True)
            order = list(servers.items()) if number % 2 == 0 else list(reversed(servers.items()))
            for name, server in order:
                for connections in (1, 32):
                    answer = run_wrk(f"{server.url}/classify", script, connections, seconds)
                    results[name]["errors"] += answer["non_2xx"] + answer["socket_errors"]
                    results[name][f"c{connections}"].append(answer["rps"])
                latency = one_connection_latency(f"{server.url}/classify", latency_requests, classifies=True)
                results[name]["p50"].append(latency["p50_ms"])
                results[name]["p99"].append(latency["p99_ms"])
                results[name]["batch"].append(
                    batch_throughput(f"{server.url}/classify_batch", seconds)["flowers_per_s"]
                )
    finally:
        for server in servers.values():
            server.stop()
    logged = sum(sum(1 for _ in path.open("rb")) for path in data_files(work / "log"))
    shutil.rmtree(work, ignore_errors=True)
    return results, logged


def render(results: dict, logged: int, args: argparse.Namespace) -> str:
    on, off = results["log on"], results["log off"]

    def row(label: str, key: str, unit: str, digits: int = 0) -> str:
        return on_off_row(label, on[key], off[key], unit, digits)

    info = machine()
    return f"""## Prediction log (log on vs off)

`make bench-log`, {dt.date.today().isoformat()}: this commit's Bento twice, `IRIS_PREDICTION_LOG=0` on one,
{args.rounds} alternated rounds of {args.seconds} s, on {info["cores"]} cores ({info["cpu"]}), {info["wrk"]}. The log
wrote {logged:,} records during the run (the rotated files it kept). Target: `/classify` throughput with
the log >= 0.90x without (32 connections). Medians of the rounds; on/off is the median of the per-round ratios
(both measured in the same round, so the machine's drift cancels), with their range. Non-2xx answers or socket
errors (wrk): {on["errors"]} with the log, {off["errors"]} without.

| measure | log on | log off | on/off (range) | rounds (on/off) |
|---|---|---|---|---|
{row("`/classify` req/s, 1 connection", "c1", "")}
{row("`/classify` req/s, 32 connections", "c32", "")}
{row("`/classify` p50, 1 connection", "p50", "ms", 2)}
{row("`/classify` p99, 1 connection", "p99", "ms", 2)}
{row("`/classify_batch` flowers/s (10,000 per request)", "batch", "")}

Records go through `bentoml.monitor` into `BufferedMonitor` (iris_classifier/serving/prediction_log.py): the request
only queues them (a batch's columns as whole arrays); a background thread writes the JSON lines, built column
by column, every second or every 1,024 records.
"""


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, rounds=8, seconds=4).parse_args(argv)
    if wrk_missing("bench-log"):
        return 2
    results, logged = measure(args.rounds, args.seconds, args.latency_requests)
    section = render(results, logged, args)
    write_section("prediction-log", section, args.output)
    print(section)
    print(f"bench-log: wrote the section to {args.output}")
    ratio = statistics.median(paired_ratios(results["log on"]["c32"], results["log off"]["c32"]))
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
