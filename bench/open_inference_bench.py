"""The Open Inference Protocol (V2) rows of `make bench`: this service's V2, over REST and gRPC, beside its native API
and beside MLServer in both its configurations (default, and in-process).

Run by bench/http_bench.py inside its rounds, right after /classify and /classify_batch on the same server, so
every figure here has its twins from the same minute. Each round:

  one flower   wrk on V2 infer ([1, 4] FP64 JSON) of this service and of MLServer (bench/mlserver_contender.py,
               the same stored pipeline, the same request body), at 1 and 32 connections, alternated (the
               order swaps every round); then one-connection latency of each. Then the same over gRPC
               (bench/grpc_bench.py): 32 concurrent calls, and one at a time.
  10,000       4 clients sending the same 10,000 flowers for `seconds` to each contender in turn (the order
               rotates every round): V2 binary (Triton's binary tensor data extension, in and out), V2 JSON
               ([10000, 4] nested rows), /classify_batch, gRPC raw contents, MLServer's V2 with the same JSON
               body (both configurations) and MLServer's gRPC (in-process) with the same raw request.

Ratios are taken round by round (bench.measure.paired_ratios): both figures of a ratio come from the same
minute of this shared machine, whose speed drifts. The 1-minute load average is read before and after each
round and printed with the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from bench import grpc_bench
from bench.measure import KeepAliveClient, paired_ratios, sequential_latency
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MODEL_NAME, SPECIES
from iris_classifier.serving.v2.types import INPUT_NAME

PATH = f"/v2/models/{MODEL_NAME}/infer"
CLIENTS = 4  # concurrent clients for the 10,000-flower rows
BINARY_HEADER = "Inference-Header-Content-Length"
# The one-flower REST contenders, and the batch rows, by name (MLServer in both configurations, mlserver_contender).
HTTP_ONE = {"v2": "this service", "mlserver": "MLServer, default", "mlserver_inproc": "MLServer, in-process"}
GRPC_ONE = {
    "grpc": "this service",
    "mlserver_grpc": "MLServer, default",
    "mlserver_inproc_grpc": "MLServer, in-process",
}
BATCH_LABELS = {
    "v2_binary": f"`POST {PATH}`, binary tensors in and out ([10000, 4] FP64 bytes)",
    "v2_json": f"`POST {PATH}`, JSON ([10000, 4] FP64, nested rows)",
    "classify_batch": '`POST /classify_batch` (`{"flowers": [...]}`)',
    "grpc_raw": "gRPC `ModelInfer`, raw contents in and out ([10000, 4] FP64 bytes)",
    "mlserver_json": f"`POST {PATH}` on MLServer (default), the same JSON body (predict_proba)",
    "mlserver_inproc_json": f"`POST {PATH}` on MLServer (in-process), the same JSON body (predict_proba)",
    "mlserver_inproc_grpc": "gRPC `ModelInfer` on MLServer (in-process), the same raw request",
}


def infer_body(rows: list[list[float]]) -> str:
    """A V2 request without `outputs`: this service answers probabilities and species, MLServer (run with
    predict_fn predict_proba) the probabilities."""
    tensor = {"name": INPUT_NAME, "shape": [len(rows), len(FEATURES)], "datatype": "FP64", "data": rows}
    return json.dumps({"inputs": [tensor]})


def binary_body(rows: list[list[float]]) -> tuple[bytes, int]:
    """The same tensor in Triton's binary tensor data extension, every output asked in binary: (body, JSON length)."""
    raw = np.array(rows, dtype="<f8").tobytes()
    tensor = {"name": INPUT_NAME, "shape": [len(rows), len(FEATURES)], "datatype": "FP64"}
    document = {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}
    head = orjson.dumps({**document, "parameters": {"binary_data_output": True}})
    return head + raw, len(head)


def one_flower_body(species: str) -> str:
    return infer_body([[EXAMPLE_FLOWERS[species][name] for name in FEATURES]])


class BinaryClient(KeepAliveClient):
    """A keep-alive client posting a binary-extension body: no Content-Type (as tritonclient sends it), the
    JSON part's length in Inference-Header-Content-Length."""

    def __init__(self, url: str, body: bytes, json_length: int) -> None:
        super().__init__(url, body)
        parsed = urlsplit(url)
        head = (
            f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n{BINARY_HEADER}: {json_length}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body


def species_of(answer: bytes, *, binary: bool = False) -> list[str]:
    """The species an answer gives: this service's `species` output (JSON or binary), MLServer's argmax of
    `predict_proba`, or /classify_batch's list."""
    if binary:  # the JSON part, then each output's bytes in order (latin-1: one character per byte)
        document, at = json.JSONDecoder().raw_decode(answer.decode("latin-1"))
        sizes = {output["name"]: output["parameters"]["binary_data_size"] for output in document["outputs"]}
        at += sizes["probabilities"]
        names = []
        while at < len(answer):
            count = int.from_bytes(answer[at : at + 4], "little")
            names.append(answer[at + 4 : at + 4 + count].decode())
            at += 4 + count
        return names
    document = json.loads(answer)
    if isinstance(document, list):
        return [flower["species"] for flower in document]
    outputs = {output["name"]: output for output in document["outputs"]}
    if "species" in outputs:
        return outputs["species"]["data"]
    chances = np.array(outputs["predict_proba"]["data"]).reshape(-1, len(SPECIES))
    return [SPECIES[index] for index in chances.argmax(axis=1)]


def concurrent_throughput(make_client, seconds: float, flowers: int, clients: int = CLIENTS) -> dict[str, Any]:
    """Flowers/s of `clients` keep-alive connections posting back to back for `seconds`; the first answer of
    each connection is returned (to check), the rest only counted (status 200 or not)."""
    connections = [make_client() for _ in range(clients)]
    firsts: list[bytes] = [b""] * clients
    counts, failures = [0] * clients, [0] * clients
    started = time.perf_counter()

    def post(index: int) -> None:
        client = connections[index]
        while time.perf_counter() - started < seconds:
            status, answer = client.post()
            if not counts[index]:
                firsts[index] = answer if status == 200 else b""
            counts[index] += 1
            failures[index] += status != 200

    threads = [threading.Thread(target=post, args=(index,)) for index in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in connections:
            client.close()
    elapsed = time.perf_counter() - started
    return {
        "flowers_per_s": sum(counts) * flowers / elapsed,
        "requests": sum(counts),
        "non_2xx": sum(failures),
        "first": firsts[0],
    }


def measure_round(
    url: str,
    *,
    grpc_target: str,
    mlservers: dict[str, tuple[str, str]],
    round_number: int,
    species: str,
    seconds: int,
    latency_requests: int,
    flowers: list[dict[str, float]],
    run_wrk,
    lua_script,
    logs: Path,
) -> dict[str, Any]:
    """One round of the V2 rows: this service (`url`, `grpc_target`) and MLServer in each configuration
    (`mlservers`: name -> (url, gRPC target)), alternated."""
    load_before = os.getloadavg()[0]
    script = lua_script(one_flower_body(species), logs, "v2-one")
    one = {"v2": url, **{name: address for name, (address, _) in mlservers.items()}}
    order = list(one) if round_number % 2 == 0 else list(one)[::-1]
    result: dict[str, Any] = {name: {} for name in one}
    for connections in (1, 32):
        for name in order:
            result[name][f"c{connections}"] = run_wrk(one[name] + PATH, script, connections, seconds)
    for name in order:
        result[name]["lat"] = sequential_latency(
            one[name] + PATH,
            one_flower_body(species).encode(),
            latency_requests,
            lambda answer: species_of(answer) == [species],
        )

    # gRPC, one flower: the same client code against this service and MLServer's gRPC server in each configuration
    flower = grpc_bench.rows_of([EXAMPLE_FLOWERS[species]])
    targets = {"grpc": grpc_target, **{f"{name}_grpc": target for name, (_, target) in mlservers.items()}}
    grpc_order = list(targets) if round_number % 2 == 0 else list(targets)[::-1]
    result["grpc_one"] = {name: grpc_bench.one_flower(targets[name], flower, species, seconds) for name in grpc_order}
    for name in grpc_order:
        result["grpc_one"][name]["lat"] = grpc_bench.latency(targets[name], flower, species, latency_requests)

    rows = [[flower[name] for name in FEATURES] for flower in flowers]
    json_body = infer_body(rows).encode()
    binary, json_length = binary_body(rows)
    native = json.dumps({"flowers": flowers}).encode()
    makers = {
        "v2_binary": lambda: BinaryClient(url + PATH, binary, json_length),
        "v2_json": lambda: KeepAliveClient(url + PATH, json_body),
        "classify_batch": lambda: KeepAliveClient(url + "/classify_batch", native),
        **{
            f"{name}_json": (lambda address=address: KeepAliveClient(address + PATH, json_body))
            for name, (address, _) in mlservers.items()
        },
    }
    grpc_batches = {"grpc_raw": grpc_target, "mlserver_inproc_grpc": mlservers["mlserver_inproc"][1]}
    contenders = list(makers) + list(grpc_batches)
    shift = round_number % len(contenders)
    batch: dict[str, Any] = {}
    for name in contenders[shift:] + contenders[:shift]:
        if name in grpc_batches:
            measured = grpc_bench.batch(grpc_batches[name], np.array(rows), seconds)
            measured["non_2xx"] = measured.pop("non_ok")
        else:
            measured = concurrent_throughput(makers[name], seconds, len(flowers))
            first = measured.pop("first")
            if not first:
                raise RuntimeError(f"bench: {name} answered its first 10,000-flower request with an error")
            measured["species"] = species_of(first, binary=name == "v2_binary")
        if len(measured["species"]) != len(flowers):
            raise RuntimeError(f"bench: {name} answered {len(measured['species'])} species for {len(flowers)} flowers")
        batch[name] = measured
    reference = batch["v2_json"]["species"]
    for measured in batch.values():
        measured["agree"] = sum(a == b for a, b in zip(measured.pop("species"), reference, strict=True))
    result["batch"] = batch
    result["load"] = (load_before, os.getloadavg()[0])
    return result


def render(rounds: list[dict[str, Any]], native: dict[str, list], seconds: int) -> str:
    """The V2 section: each V2 figure beside the same server's /classify and MLServer's (both configurations),
    REST and gRPC, with per-round ratios; batch goals against the faster MLServer of each round."""

    def med(values) -> float:
        return statistics.median(values)

    def ratio(values: list[float], baseline: list[float]) -> tuple[float, float, float]:
        per_round = paired_ratios(values, baseline)
        return med(per_round), min(per_round), max(per_round)

    def shown(values: list[float], baseline: list[float]) -> str:
        middle, low, high = ratio(values, baseline)
        return f"**{middle:.2f}x** ({low:.2f}-{high:.2f})"

    def faster(*series: list[float]) -> list[float]:
        return [max(values) for values in zip(*series, strict=True)]

    one = {
        "`POST /classify` (this service)": native,
        **{
            f"`POST {PATH}` ({label})": {key: [r[name][key] for r in rounds] for key in ("c1", "c32", "lat")}
            for name, label in HTTP_ONE.items()
        },
    }
    one_rows = [
        f"| {label} | {med([r['rps'] for r in runs['c1']]):.0f} | {med([r['rps'] for r in runs['c32']]):.0f} | "
        f"{med([r['p50_ms'] for r in runs['lat']]):.2f} | {med([r['p99_ms'] for r in runs['lat']]):.2f} |"
        for label, runs in one.items()
    ]
    named = dict(zip(("classify", *HTTP_ONE), one.values(), strict=True))
    c32 = {name: [r["rps"] for r in runs["c32"]] for name, runs in named.items()}
    c1 = {name: [r["rps"] for r in runs["c1"]] for name, runs in named.items()}
    grpc_one = {name: [r["grpc_one"][name] for r in rounds] for name in GRPC_ONE}
    grpc_rps = {name: [m["rps"] for m in runs] for name, runs in grpc_one.items()}
    grpc_rows = [
        f"| {GRPC_ONE[name]} | {med(grpc_rps[name]):.0f} | {med([m['lat']['p50_ms'] for m in runs]):.2f} | "
        f"{med([m['lat']['p99_ms'] for m in runs]):.2f} | {sum(m['errors'] for m in runs)} |"
        for name, runs in grpc_one.items()
    ]
    best_grpc = faster(grpc_rps["mlserver_grpc"], grpc_rps["mlserver_inproc_grpc"])
    batch = {name: [r["batch"][name]["flowers_per_s"] for r in rounds] for name in BATCH_LABELS}
    best_json = faster(batch["mlserver_json"], batch["mlserver_inproc_json"])
    batch_rows = [
        f"| {label} | {med(batch[name]):,.0f} | {shown(batch[name], best_json)} | "
        f"{shown(batch[name], batch['mlserver_json'])} | "
        f"{sum(r['batch'][name]['agree'] for r in rounds):,} / {len(rounds) * 10_000:,} |"
        for name, label in BATCH_LABELS.items()
    ]
    by_contender = {
        name: sum(
            r[name][key]["non_2xx"] + r[name][key].get("socket_errors", 0)
            for r in rounds
            for key in ("c1", "c32", "lat")
        )
        for name in HTTP_ONE
    }
    by_contender.update({name: sum(r["batch"][name]["non_2xx"] for r in rounds) for name in BATCH_LABELS})
    by_contender.update({name: sum(r["grpc_one"][name]["errors"] for r in rounds) for name in GRPC_ONE})
    errors = sum(by_contender.values())
    where = ", ".join(f"{name} {count}" for name, count in by_contender.items() if count)
    loads = [value for r in rounds for value in r["load"]]
    v2_over_mlserver = ratio(c32["v2"], c32["mlserver"])[0]
    grpc_over_mlserver = ratio(grpc_rps["grpc"], best_grpc)[0]
    json_over_best = ratio(batch["v2_json"], best_json)[0]
    native_over_best = ratio(batch["classify_batch"], best_json)[0]
    binary_over_json = ratio(batch["v2_binary"], batch["v2_json"])[0]
    other_ways = faster(batch["v2_binary"], batch["v2_json"], batch["classify_batch"])
    grpc_over_other_ways = ratio(batch["grpc_raw"], other_ways)[0]
    inproc_over_default = ratio(batch["mlserver_inproc_json"], batch["mlserver_json"])[0]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return f"""
## Open Inference Protocol (V2): beside /classify and beside MLServer, REST and gRPC (same run, alternated)

MLServer {_mlserver_version()} with mlserver-sklearn serves the same stored scikit-learn pipeline
(`bench/mlserver_contender.py`, its own venv `.venv-mlserver`) in both its configurations, side by side:
**default** (one parallel inference worker process beside its HTTP/gRPC process) and **in-process**
(`parallel_workers: 0`, its fastest for big batches here); otherwise its defaults except loopback ports,
`debug: false` (no access log, as this service) and `predict_fn: predict_proba`. Both get the same request bodies,
and over gRPC the same client code (`bench/grpc_bench.py`: the project's stubs, raw tensor contents as
tritonclient.grpc sends). {len(rounds)} rounds of {seconds} s per measure; the order of the contenders swaps or
rotates every round. 1-minute load average (`uptime`) at the start and end of each round:
{", ".join(f"{value:.1f}" for value in loads)} on 2 cores (the machine is shared: read the ratios, which pair
figures from the same round; the ranges are over the rounds).

| one flower over REST (`[1, 4]` FP64 JSON) | req/s, 1 connection | req/s, 32 connections | p50 ms, 1 conn | p99 ms, 1 conn |
|---|---:|---:|---:|---:|
{chr(10).join(one_rows)}

V2 infer / MLServer's V2 infer (default): {shown(c32["v2"], c32["mlserver"])} at 32 connections,
{shown(c1["v2"], c1["mlserver"])} at 1; / MLServer in-process: {shown(c32["v2"], c32["mlserver_inproc"])} at
32 connections. V2 infer / `/classify`: {shown(c32["v2"], c32["classify"])} at 32 connections,
{shown(c1["v2"], c1["classify"])} at 1.

| one flower over gRPC (`ModelInfer`, `[1, 4]` FP64 raw) | calls/s, {grpc_bench.STREAMS} concurrent | p50 ms, 1 at a time | p99 ms, 1 at a time | errors |
|---|---:|---:|---:|---:|
{chr(10).join(grpc_rows)}

gRPC on this service / MLServer's gRPC, the faster configuration of each round: {shown(grpc_rps["grpc"], best_grpc)}.

| 10,000 flowers per request, {CLIENTS} clients | flowers/s | / MLServer's faster | / MLServer default | species equal to V2 JSON's |
|---|---:|---:|---:|---:|
{chr(10).join(batch_rows)}

MLServer in-process / its default on 10,000-flower JSON: {shown(batch["mlserver_inproc_json"], batch["mlserver_json"])}.
Binary / JSON on this service's V2: {shown(batch["v2_binary"], batch["v2_json"])}; gRPC raw / the fastest REST
way of the round: {shown(batch["grpc_raw"], other_ways)}. The prediction log is on for this service throughout
(every flower written). Non-2xx answers, failed calls, wrong answers and socket errors in these rows: {errors}{f" ({where})" if where else ""}.

| target | measured | |
|---|---|---|
| one-flower V2 infer >= 8x MLServer's (default) at 32 connections (#26) | {v2_over_mlserver:.2f}x | {verdict(v2_over_mlserver >= 8)} |
| one flower over gRPC >= 6x MLServer's gRPC, its faster configuration (#35) | {grpc_over_mlserver:.2f}x | {verdict(grpc_over_mlserver >= 6)} |
| 10,000-flower gRPC raw the fastest way to send a batch here (#35) | {grpc_over_other_ways:.2f}x the fastest REST way | {verdict(grpc_over_other_ways > 1)} |
| 10,000-flower `/classify_batch` >= 1.0x MLServer's faster configuration (#35) | {native_over_best:.2f}x | {verdict(native_over_best >= 1.0)} |
| 10,000-flower V2 JSON >= 2.0x MLServer's faster configuration (#35) | {json_over_best:.2f}x | {verdict(json_over_best >= 2.0)} |
| 10,000-flower binary tensor faster than JSON (#26) | {binary_over_json:.2f}x | {verdict(binary_over_json > 1)} |

(MLServer in-process was {inproc_over_default:.2f}x its default on 10,000-flower JSON in this run.)
"""


def _mlserver_version() -> str:
    from bench.mlserver_contender import LOCK

    pins = dict(line.split(" ", 1)[0].split("==") for line in LOCK.read_text().splitlines() if "==" in line)
    return pins.get("mlserver", "?")
