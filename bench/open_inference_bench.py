"""The Open Inference Protocol (V2) rows of `make bench`: one flower and a 10,000-flower tensor, beside /classify.

Run by bench/http_bench.py inside its rounds, right after /classify and /classify_batch on the same
server, so the V2 figures and the native ones are measured side by side.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.measure import KeepAliveClient, keep_posting, sequential_latency
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MODEL_NAME, SPECIES
from iris_classifier.serving.v2.types import INPUT_NAME

PATH = f"/v2/models/{MODEL_NAME}/infer"


def infer_body(rows: list[list[float]]) -> str:
    tensor = {"name": INPUT_NAME, "shape": [len(rows), len(FEATURES)], "datatype": "FP64", "data": rows}
    return json.dumps({"inputs": [tensor]})


def one_flower_body(species: str) -> str:
    return infer_body([[EXAMPLE_FLOWERS[species][name] for name in FEATURES]])


def latency(url: str, count: int, species: str) -> dict[str, float]:
    """p50 and p99 of `count` sequential one-flower V2 requests; a failure is a non-200 or a wrong species."""

    def answer_ok(answer: bytes) -> bool:
        return json.loads(answer)["outputs"][1]["data"] == [species]

    return sequential_latency(url + PATH, one_flower_body(species).encode(), count, answer_ok)


def batch_throughput(url: str, seconds: float, flowers: list[dict[str, float]]) -> dict[str, float]:
    """Flowers/s over sequential V2 requests of one [N, 4] tensor; the first answer is checked whole."""
    client = KeepAliveClient(url + PATH, infer_body([[f[name] for name in FEATURES] for f in flowers]).encode())
    try:
        status, body = client.post()
        species = json.loads(body)["outputs"][1]["data"] if status == 200 else []
        if len(species) != len(flowers) or set(species) - set(SPECIES):
            raise RuntimeError(f"V2 tensor answered {status}: {body[:200]!r}")
        done, failures, elapsed = keep_posting(client, seconds)
    finally:
        client.close()
    return {"flowers_per_s": done * len(flowers) / elapsed, "non_2xx": failures}


def measure_round(
    url: str, *, species: str, seconds: int, latency_requests: int, flowers, run_wrk, lua_script, logs: Path
):
    """One round of the V2 rows, on the server /classify was just measured on."""
    script = lua_script(one_flower_body(species), logs, "v2-one")
    return {
        "c1": run_wrk(url + PATH, script, 1, seconds),
        "c32": run_wrk(url + PATH, script, 32, seconds),
        "lat": latency(url, latency_requests, species),
        "batch": batch_throughput(url, seconds, flowers),
    }


def render(rounds: list[dict[str, Any]], native: dict[str, list], native_batch: list[dict]) -> str:
    """The V2 section: each V2 figure beside the same server's /classify or /classify_batch figure."""

    def med(values) -> float:
        return statistics.median(values)

    def row(label: str, runs: dict[str, list]) -> str:
        return (
            f"| {label} | {med([r['rps'] for r in runs['c1']]):.0f} | {med([r['rps'] for r in runs['c32']]):.0f} | "
            f"{med([r['p50_ms'] for r in runs['lat']]):.2f} | {med([r['p99_ms'] for r in runs['lat']]):.2f} |"
        )

    v2 = {key: [r[key] for r in rounds] for key in ("c1", "c32", "lat")}
    errors = sum(r["c1"]["non_2xx"] + r["c32"]["non_2xx"] + r["lat"]["non_2xx"] + r["batch"]["non_2xx"] for r in rounds)
    errors += sum(r["c1"]["socket_errors"] + r["c32"]["socket_errors"] for r in rounds)
    v2_flowers = med([r["batch"]["flowers_per_s"] for r in rounds])
    native_flowers = med([b["flowers_per_s"] for b in native_batch])
    v2_c32, native_c32 = med([r["rps"] for r in v2["c32"]]), med([r["rps"] for r in native["c32"]])
    return f"""
## Open Inference Protocol (V2) beside the native API (same server, same rounds)

| request | req/s, 1 connection | req/s, 32 connections | p50 ms, 1 conn | p99 ms, 1 conn |
|---|---:|---:|---:|---:|
{row("`POST /classify`, one flower", native)}
{row(f"`POST {PATH}`, one flower ([1, 4] FP64)", v2)}

| batch of 10,000 flowers, one connection | flowers/s |
|---|---:|
| `POST /classify_batch` | {native_flowers:,.0f} |
| `POST {PATH}` ([10000, 4] FP64, nested rows) | {v2_flowers:,.0f} |

V2 / native: {v2_c32 / native_c32:.2f}x the requests/s at 32 connections, {v2_flowers / native_flowers:.2f}x the
flowers/s for 10,000 flowers; the same flowers, the same model call. V2 non-2xx + socket errors: {errors}.
"""
