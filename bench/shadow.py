"""What a shadow model costs the clients: the Bento served twice, shadow on and off, alternated: `make bench-shadow`.

Both contenders are this commit's Bento with the same settings, each on its own loopback port and BentoML home;
one shadows every flower with a second model (`IRIS_SHADOW`: the pipeline's model again, as the cost of a shadow
is one more forest of the same kind). Per round: `/classify` requests/s and p99 at 32 connections (wrk
--latency) and `/classify_batch` flowers/s with 10,000-flower requests; the rounds alternate on/off so the
shared machine's noise falls on both. Goals: with the shadow, `/classify` >= 0.8x the requests/s and batches
>= 0.7x the flowers/s. Replaces the "Shadow" section of docs/benchmarks.md (between its markers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench.measure import ONE_FLOWER as FLOWER
from bench.measure import batch_throughput, bench_parser, lua_script, machine, on_off_row, paired_ratios, wrk_missing
from bench.report import write_section
from iris_classifier.harness.servers import Server
from iris_classifier.model.store import ModelCard
from iris_classifier.registry.bento import build as build_bento

GOALS = {"c32": 0.8, "batch": 0.7}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_with_latency(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """wrk's requests/s, its 99th percentile latency (ms) and errors."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": float(p99.group(1)) * UNITS[p99.group(2)],
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def measure(rounds: int, seconds: int) -> tuple[dict, dict]:
    bento = build_bento()
    shadow_tag = ModelCard.read().tag
    work = Path(tempfile.mkdtemp(prefix="iris-bench-shadow-"))
    servers = {
        "shadow on": Server(
            bento, env={"IRIS_SHADOW": shadow_tag, "IRIS_MONITOR_DIR": str(work / "on")}, log_path=work / "on.log"
        ),
        "shadow off": Server(bento, env={"IRIS_MONITOR_DIR": str(work / "off")}, log_path=work / "off.log"),
    }
    results = {name: {"c32": [], "p99": [], "batch": [], "errors": 0} for name in servers}
    try:
        for server in servers.values():
            server.start(wait_ready=180)
        shadow = requests.get(f"{servers['shadow on'].url}/model", timeout=10).json()["shadow"]
        if not (shadow and shadow["active"]):
            raise SystemExit(f"bench-shadow: the shadow did not load: {shadow}")
        script = lua_script(FLOWER, work, "one")
        for server in servers.values():
            wrk_with_latency(f"{server.url}/classify", script, 8, 2)  # warm-up, not recorded
        for number in range(rounds):
            print(f"bench-shadow: round {number + 1} of {rounds}", flush=True)
            order = list(servers.items()) if number % 2 == 0 else list(reversed(servers.items()))
            for name, server in order:
                answer = wrk_with_latency(f"{server.url}/classify", script, 32, seconds)
                results[name]["c32"].append(answer["rps"])
                results[name]["p99"].append(answer["p99_ms"])
                results[name]["errors"] += answer["errors"]
                batch = batch_throughput(f"{server.url}/classify_batch", seconds)
                results[name]["batch"].append(batch["flowers_per_s"])
                results[name]["errors"] += batch["non_2xx"]
        shadow = requests.get(f"{servers['shadow on'].url}/model", timeout=10).json()["shadow"]
    finally:
        for server in servers.values():
            server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return results, shadow


def render(results: dict, shadow: dict, args: argparse.Namespace, load: str) -> str:
    on, off = results["shadow on"], results["shadow off"]

    def row(label: str, key: str, unit: str, digits: int = 0) -> str:
        return on_off_row(label, on[key], off[key], unit, digits)

    info = machine()
    offered = shadow["shadowed"] + shadow["shed"]
    return f"""## Shadow (shadow on vs off)

`make bench-shadow`, {dt.date.today().isoformat()}: this commit's Bento twice, one with `IRIS_SHADOW` (a second copy
of the pipeline's forest, loaded beside it), {args.rounds} alternated rounds of {args.seconds} s, on {info["cores"]}
cores ({info["cpu"]}), {info["wrk"]}; load average before the run: {load}. Goals: with the shadow, `/classify`
>= 0.8x the requests/s at 32 connections, 10,000-flower batches >= 0.7x the flowers/s. Medians of the rounds;
on/off is the median of the per-round ratios, with their range. Non-2xx answers or socket errors: {on["errors"]}
with the shadow, {off["errors"]} without.

| measure | shadow on | shadow off | on/off (range) | rounds (on/off) |
|---|---|---|---|---|
{row("`/classify` req/s, 32 connections", "c32", "")}
{row("`/classify` p99, 32 connections (wrk)", "p99", "ms", 2)}
{row("`/classify_batch` flowers/s (10,000 per request)", "batch", "")}

The shadow classified {shadow["shadowed"]:,} of the {offered:,} flowers offered to it and shed {shadow["shed"]:,}
({shadow["shed"] / max(1, offered):.1%}; errors: {shadow["errors"]}); agreement {shadow["agreement"]}. A request only
appends its rows to the shadow's bounded queue (iris_classifier/serving/shadow.py); a thread takes the queue every
50 ms and classifies it in one call per 10,000 flowers, then the prediction log's writer writes its lines.
"""


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, rounds=6, seconds=4).parse_args(argv)
    if wrk_missing("bench-shadow"):
        return 2
    load = Path("/proc/loadavg").read_text().split()[:3]
    results, shadow = measure(args.rounds, args.seconds)
    section = render(results, shadow, args, " ".join(load))
    write_section("shadow", section, args.output)
    print(section)
    print(f"bench-shadow: wrote the section to {args.output}")
    met = all(
        statistics.median(paired_ratios(results["shadow on"][key], results["shadow off"][key])) >= goal
        for key, goal in GOALS.items()
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
