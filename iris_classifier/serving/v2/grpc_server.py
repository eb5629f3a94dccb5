"""The Open Inference Protocol over gRPC (KServe's GRPCInferenceService), beside REST in the same worker: the same
DataPlane (model, validation, prediction log, metrics), the same admission control, with gRPC health checking
and reflection.

BentoML 1.4 serves no gRPC for `@bentoml.service` classes, so this is a `grpc.aio` server of the project's own,
started by the service's startup hook on the worker's event loop (where the admission control lives: it is
used from that loop only) and stopped by its shutdown hook.

Where it listens: IRIS_GRPC_HOST (else BENTOML_HOST, else 0.0.0.0, as BentoML's HTTP default) and
IRIS_GRPC_PORT (default 3001; `off`: no gRPC server). With one worker the port is bound exclusively, so a
port already in use stops the start with a message; with several workers (IRIS_WORKERS) each binds it with
SO_REUSEPORT and the kernel spreads connections over them, as BentoML's shared socket spreads HTTP ones.

Errors are status codes with the protocol's message naming the field and the rule: a refused request
INVALID_ARGUMENT, an unknown model or version NOT_FOUND, a request shed by the admission control
RESOURCE_EXHAUSTED (its `retry-after` in the trailing metadata), not ready UNAVAILABLE. Messages are bounded
(MAX_MESSAGE_BYTES in, gRPC answers RESOURCE_EXHAUSTED beyond), and so are metadata and concurrent calls.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from prometheus_client import Counter, Histogram
from starlette.concurrency import run_in_threadpool

from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS
from iris_classifier.serving.admission import Admission
from iris_classifier.serving.middleware import requests_shed_total
from iris_classifier.serving.settings import MAX_CONCURRENCY, MAX_HEAD_BYTES
from iris_classifier.serving.v2.dataplane import DataPlane, server_metadata
from iris_classifier.serving.v2.errors import ProtocolError
from iris_classifier.serving.v2.grpc_codec import GrpcDecoder, infer_response
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2 as pb
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2_grpc as pb_grpc

logger = logging.getLogger("bentoml.iris_classifier.grpc")  # under "bentoml": in the server's log

PORT_ENV, HOST_ENV = "IRIS_GRPC_PORT", "IRIS_GRPC_HOST"
DEFAULT_PORT = 3001
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name  # inference.GRPCInferenceService
# The largest valid request is MAX_BATCH_FLOWERS rows of 4 FP64 values (320,000 bytes, raw or typed); 64 KiB more
# for its names, id and parameters. Answers: 10,000 rows of 3 FP64 and a species name each, ~0.4 MB.
MAX_MESSAGE_BYTES = MAX_BATCH_FLOWERS * len(FEATURES) * 8 + 64 * 1024
MAX_ANSWER_BYTES = 4 * 2**20
# Below this request size a call is answered on the event loop (tens of microseconds); above, in a thread.
INLINE_MESSAGE_BYTES = 4096
GRACE_SECONDS = 5.0  # calls in flight at shutdown get this long to finish
# A ProtocolError's HTTP status as a gRPC status code.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

grpc_requests_total = Counter(
    name="iris_grpc_requests_total",
    documentation="gRPC calls answered (the Open Inference Protocol), by method and status code",
    labelnames=["method", "code"],
)
grpc_request_seconds = Histogram(
    name="iris_grpc_request_seconds",
    documentation="Time to answer a gRPC call (the Open Inference Protocol), by method",
    labelnames=["method"],
    buckets=(1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class Refused(Exception):
    """A call answered with a status code other than OK, its message, and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, trailing: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.trailing = code, message, trailing


Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def observe(method: str, code: grpc.StatusCode, started: float) -> None:
    grpc_requests_total.labels(method=method, code=code.name).inc()
    grpc_request_seconds.labels(method=method).observe(time.perf_counter() - started)


def observed(handler: Handler) -> Handler:
    """A servicer method counted and timed by method and code, its refusals answered as gRPC statuses."""
    method = handler.__name__

    async def answer(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started, trailing = time.perf_counter(), None
        try:
            result = await handler(self, request, context)
        except ProtocolError as error:
            code, message = STATUS_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT), error.message
        except Refused as refusal:
            code, message, trailing = refusal.code, refusal.message, refusal.trailing
        except grpc.aio.AbortError:  # the handler ended the call itself, status sent
            raise
        except Exception:
            code, message = grpc.StatusCode.INTERNAL, f"{method}: internal error (the server's log has the details)"
            logger.exception("gRPC %s failed", method)
        else:
            observe(method, grpc.StatusCode.OK, started)
            return result
        # counted before the status goes out: a client that reads /metrics once it has its answer sees it there
        observe(method, code, started)
        if trailing:
            context.set_trailing_metadata(trailing)
        await context.abort(code, message)

    answer.__name__ = method
    return answer


def claimed_flowers(request: pb.ModelInferRequest) -> int:
    """The flowers a call is charged by the admission control: its first input's rows as its shape says,
    within 1..MAX_BATCH_FLOWERS (a shape that lies is refused when the values are read)."""
    shape = request.inputs[0].shape if request.inputs else ()
    return min(MAX_BATCH_FLOWERS, max(1, shape[0] if shape else 1))


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over the served model's DataPlane."""

    def __init__(self, plane: DataPlane, admission: Admission) -> None:
        self.plane = plane
        self.admission = admission

    @observed
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @observed
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.is_ready())

    @observed
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.model_is_ready(request.name, request.version or None))

    @observed
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**server_metadata(extensions=()))

    @observed
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        metadata = self.plane.metadata(request.name, request.version or None)
        tensors = {
            side: [pb.ModelMetadataResponse.TensorMetadata(**{key: t[key] for key in ("name", "datatype", "shape")})
                   for t in metadata[side]]
            for side in ("inputs", "outputs")
        }  # fmt: skip
        return pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"], **tensors
        )

    @observed
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        if not self.plane.is_ready():
            raise Refused(grpc.StatusCode.UNAVAILABLE, "not ready: the model is loading or the server is stopping")
        self.plane.model_is_ready(request.model_name, request.model_version or None)  # unknown: NOT_FOUND
        flowers = claimed_flowers(request)
        reason = self.admission.admit(flowers)
        if reason is not None:
            requests_shed_total.labels(reason=reason).inc()
            wait = self.admission.retry_after()
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"overloaded, not processed ({reason}): {self.admission.in_flight:,} flowers are in flight and this "
                f"request's {flowers:,} would pass the budget; retry after {wait} s",
                (("retry-after", str(wait)),),
            )
        try:
            request_id = str(random.getrandbits(64))  # as bentoml_compat.request_id gives outside an HTTP request
            context.set_trailing_metadata((("x-request-id", request_id),))
            slots = self.admission.slot(flowers)
            if slots is None:
                return await self._answer(request, request_id)
            async with slots:
                return await self._answer(request, request_id)
        finally:
            self.admission.release(flowers)

    async def _answer(self, request: pb.ModelInferRequest, request_id: str) -> pb.ModelInferResponse:
        if request.ByteSize() < INLINE_MESSAGE_BYTES:
            return self.infer(request, request_id)
        return await run_in_threadpool(self.infer, request, request_id)

    def infer(self, request: pb.ModelInferRequest, request_id: str) -> pb.ModelInferResponse:
        inference = self.plane.run(GrpcDecoder(request), request_id)
        return infer_response(inference, version=self.plane.version, raw=bool(request.raw_input_contents))


def address() -> str | None:
    """host:port to listen on (IRIS_GRPC_HOST, IRIS_GRPC_PORT); None when IRIS_GRPC_PORT is `off`."""
    port = os.environ.get(PORT_ENV) or str(DEFAULT_PORT)
    if port.lower() == "off":
        return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"iris_classifier: {PORT_ENV}={port!r} is not a port (1-65535) or `off`")
    host = os.environ.get(HOST_ENV) or os.environ.get("BENTOML_HOST") or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def described_services() -> DescriptorPool:
    """What reflection describes: the inference service, health checking and reflection itself (the stubs keep
    their messages in a pool of their own, ops/grpc_stubs.py, so protobuf's default pool lacks them)."""
    pool = DescriptorPool()
    for module in (pb, health_pb2, reflection_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pool


@dataclass
class GrpcServer:
    """A started gRPC server and its health servicer."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    address: str

    @classmethod
    async def start(cls, plane: DataPlane, admission: Admission, *, workers: int = 1) -> GrpcServer | None:
        """Serve on `address()` (None when turned off); its health SERVING once listening."""
        where = address()
        if where is None:
            logger.info("gRPC: off (%s=off)", PORT_ENV)
            return None
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_ANSWER_BYTES),
                ("grpc.max_metadata_size", MAX_HEAD_BYTES),
                ("grpc.so_reuseport", 1 if workers > 1 else 0),
            ],
            maximum_concurrent_rpcs=MAX_CONCURRENCY,
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane, admission), server)
        checks = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checks, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
            pool=described_services(),
        )
        try:
            server.add_insecure_port(where)
        except RuntimeError as error:
            raise SystemExit(
                f"iris_classifier: gRPC cannot listen on {where} ({error}); is another server using the port? "
                f"Choose another with {PORT_ENV} (make serve GRPC_PORT=...), or {PORT_ENV}=off"
            ) from None
        await server.start()
        for service in ("", SERVICE_NAME):
            await checks.set(service, health_pb2.HealthCheckResponse.SERVING)
        logger.info("gRPC: the Open Inference Protocol on %s (health, reflection)", where)
        return cls(server, checks, where)

    async def stop(self) -> None:
        """NOT_SERVING to health checks, then the calls in flight get GRACE_SECONDS to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(GRACE_SECONDS)
        logger.info("gRPC: stopped (%s)", self.address)
