"""The gRPC rows of `make bench`: the Open Inference Protocol over gRPC, this service beside MLServer's gRPC server,
driven by the same client code (the project's generated stubs, raw tensor contents as tritonclient.grpc sends).

  one flower   32 concurrent calls for `seconds` (grpc.aio, one channel), then one-call-at-a-time latency
  10,000       4 clients (threads, a channel each) calling back to back with the same 10,000 flowers

Every answer's species are checked: this service's `species` output, MLServer's argmax of `predict_proba`.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import grpc
import numpy as np

from iris_classifier.domain.schema import FEATURES, MODEL_NAME, SPECIES
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2 as pb
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2_grpc as pb_grpc
from iris_classifier.serving.v2.types import INPUT_NAME

STREAMS = 32  # concurrent one-flower calls
CLIENTS = 4  # concurrent 10,000-flower clients
MAX_MESSAGE = 64 * 2**20  # the client's receive limit: a 10,000-flower answer is ~0.4 MB


def infer_request(rows: np.ndarray) -> pb.ModelInferRequest:
    """[N, 4] FP64 in raw_input_contents, no outputs named (every output answered)."""
    request = pb.ModelInferRequest(
        model_name=MODEL_NAME, inputs=[{"name": INPUT_NAME, "datatype": "FP64", "shape": list(rows.shape)}]
    )
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype="<f8").tobytes())
    return request


def species_of(response: pb.ModelInferResponse) -> list[str]:
    """This service's `species` output, or the argmax of MLServer's `predict_proba`, raw or typed."""
    for index, output in enumerate(response.outputs):
        raw = response.raw_output_contents[index] if index < len(response.raw_output_contents) else None
        if output.name == "species":
            if raw is None:
                return [name.decode() for name in output.contents.bytes_contents]
            names, at = [], 0
            while at < len(raw):
                count = int.from_bytes(raw[at : at + 4], "little")
                names.append(raw[at + 4 : at + 4 + count].decode())
                at += 4 + count
            return names
    for index, output in enumerate(response.outputs):
        if output.name == "predict_proba":
            if index < len(response.raw_output_contents):
                chances = np.frombuffer(response.raw_output_contents[index], dtype="<f8")
            else:
                chances = np.array(output.contents.fp64_contents)
            return [SPECIES[i] for i in chances.reshape(-1, len(SPECIES)).argmax(axis=1)]
    raise ValueError(f"no species or predict_proba output in {[o.name for o in response.outputs]}")


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])


def one_flower(target: str, rows: np.ndarray, expected: str, seconds: float, streams: int = STREAMS) -> dict[str, Any]:
    """Calls/s of `streams` concurrent one-flower calls on one channel (grpc.aio), each answer checked."""
    request = infer_request(rows)

    async def run() -> tuple[int, int]:
        answered = failed = 0
        async with grpc.aio.insecure_channel(target) as aio_channel:
            stub = pb_grpc.GRPCInferenceServiceStub(aio_channel)
            deadline = time.perf_counter() + seconds

            async def caller() -> None:
                nonlocal answered, failed
                while time.perf_counter() < deadline:
                    try:
                        response = await stub.ModelInfer(request, timeout=30)
                    except grpc.aio.AioRpcError:
                        failed += 1
                        continue
                    answered += 1
                    failed += species_of(response) != [expected]

            await asyncio.gather(*(caller() for _ in range(streams)))
        return answered, failed

    started = time.perf_counter()
    answered, failed = asyncio.run(run())
    return {"rps": answered / (time.perf_counter() - started), "requests": answered, "errors": failed}


def latency(target: str, rows: np.ndarray, expected: str, count: int) -> dict[str, float]:
    """One call at a time on one channel: p50 and p99 in ms, every answer checked."""
    request = infer_request(rows)
    times = []
    with channel(target) as open_channel:
        stub = pb_grpc.GRPCInferenceServiceStub(open_channel)
        for _ in range(20):  # warm the connection
            stub.ModelInfer(request, timeout=30)
        for _ in range(count):
            started = time.perf_counter()
            response = stub.ModelInfer(request, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
            if species_of(response) != [expected]:
                raise RuntimeError(f"bench: {target} answered {species_of(response)} for one {expected}")
    quantiles = statistics.quantiles(times, n=100)
    return {"p50_ms": statistics.median(times), "p99_ms": quantiles[98]}


def batch(target: str, rows: np.ndarray, seconds: float, clients: int = CLIENTS) -> dict[str, Any]:
    """Flowers/s of `clients` threads (a channel each) calling back to back with `rows`; the first answer's
    species are returned (to check), every other answer only counted."""
    request = infer_request(rows)
    counts, failures, firsts = [0] * clients, [0] * clients, [None] * clients
    started = time.perf_counter()

    def call(index: int) -> None:
        with channel(target) as open_channel:
            stub = pb_grpc.GRPCInferenceServiceStub(open_channel)
            while time.perf_counter() - started < seconds:
                try:
                    response = stub.ModelInfer(request, timeout=60)
                except grpc.RpcError:
                    failures[index] += 1
                    continue
                if firsts[index] is None:
                    firsts[index] = response
                counts[index] += 1

    threads = [threading.Thread(target=call, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    first = next((response for response in firsts if response is not None), None)
    return {
        "flowers_per_s": sum(counts) * len(rows) / elapsed,
        "requests": sum(counts),
        "non_ok": sum(failures),
        "species": species_of(first) if first is not None else [],
    }


def rows_of(flowers: list[dict[str, float]]) -> np.ndarray:
    return np.array([[flower[name] for name in FEATURES] for flower in flowers], dtype=np.float64)
