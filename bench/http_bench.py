"""Serving benchmark, contenders side by side in one run, alternated: `make bench`.

Contenders (same request schema, same server settings, each on its own loopback port):
  service  this project's Bento, as `make serve` runs it
  noop     bench/noop_service.py: the framework's ceiling, no model call
  naive    bench/naive_service.py: the sklearn pipeline called per request (BentoML's sklearn example)
  mlserver MLServer serving the same stored pipeline (bench/mlserver_contender.py), in its default
           configuration and in-process (parallel_workers: 0), for the Open Inference Protocol rows
           (bench/open_inference_bench.py): one flower over REST and gRPC, and 10,000 flowers as binary and
           JSON tensors, gRPC raw contents, beside /classify_batch

Throughput and errors come from wrk (Debian package); one-connection latency from a minimal
keep-alive HTTP/1.1 client on a raw socket timing each request (wrk 4.1's latency histogram
disagrees with its own request count on this machine, so its percentiles are not used; an HTTP
library such as requests adds ~0.5 ms of its own per request). Writes docs/benchmarks.md.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from bench import mlserver_contender, open_inference_bench
from bench.measure import (
    BATCH,
    ONE_FLOWER,
    ONE_SPECIES,
    batch_flowers,
    batch_throughput,
    bench_parser,
    lua_script,
    machine,
    one_connection_latency,
    run_wrk,
    wrk_missing,
)
from bench.model_latency import measure as measure_in_process
from bench.model_latency import render as render_in_process
from bench.report import write_section
from iris_classifier.harness.servers import Server
from iris_classifier.registry.bento import build as build_bento


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
    v2_rounds: list[dict] = []  # the Open Inference Protocol (V2) rows, on the service's server and MLServer
    mlservers: dict[str, object] = {}  # MLServer in both configurations (mlserver_contender.CONFIGURATIONS)
    try:
        cold = {}
        for name, server in servers.items():
            started = time.monotonic()
            server.start(wait_ready=120)
            cold[name] = time.monotonic() - started
        mlserver_addresses = {}
        for name, workers in (("mlserver", None), ("mlserver_inproc", 0)):
            process, address = mlserver_contender.start(
                mlserver_contender.model_dir(), log_path=logs / f"{name}.log", parallel_workers=workers
            )
            mlservers[name] = process
            mlserver_addresses[name] = (address, process.grpc_target)
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
                    servers["service"].url, grpc_target=servers["service"].grpc_target,
                    mlservers=mlserver_addresses, round_number=round_number,
                    species=ONE_SPECIES, seconds=args.seconds, latency_requests=args.latency_requests,
                    flowers=batch_flowers(BATCH), run_wrk=run_wrk, lua_script=lua_script, logs=logs,
                )
            )  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
        for process in mlservers.values():
            mlserver_contender.stop(process)
    in_process = measure_in_process(rounds=args.rounds)
    report = render(results, batch, in_process, cold, machine(), args)
    report += open_inference_bench.render(v2_rounds, results["service"], args.seconds)
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
