"""ASGI middlewares of the service: the request guard (size, JSON only) and the response-start timeout (which also
gives BentoML's own concurrency refusal a Retry-After), and the counter of refused (shed) requests."""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

from prometheus_client import Counter

# A full batch of 10,000 flowers is about 900 kB of JSON; 2 MiB leaves room for formatting.
MAX_BODY_BYTES = 2 * 1024 * 1024
# Seconds a refused client is asked to wait (Retry-After): a 10,000-flower batch is answered in ~0.1 s.
RETRY_AFTER_SECONDS = 1
SHED_REASONS = ("flowers_in_flight", "memory_pressure", "max_concurrency")

requests_shed_total = Counter(
    name="iris_requests_shed_total",
    documentation="Requests refused at once because the worker could not hold them (503 or 429, with Retry-After), "
    "by reason: flowers_in_flight (the admission budget), memory_pressure (the pod's working set near its limit), "
    "max_concurrency (BentoML's traffic.max_concurrency)",
    labelnames=["reason"],
)
for _reason in SHED_REASONS:  # every series at 0 from the start: increase() never counts a series' first sample
    requests_shed_total.labels(reason=_reason)


async def send_json(
    send: Any, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer an ASGI request with a small JSON body, from a middleware."""
    body = json.dumps(payload).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class ResponseStartTimeout:
    """Answer 504 when no response has started within `timeout` seconds, and release each request once answered.

    It stands in for BentoML's own `traffic.timeout` middleware (see bentoml_compat for why and how).

    BentoML 1.4.40's TimeoutMiddleware schedules `loop.call_later(timeout, ...)` per request and never
    cancels it. Each timer keeps the request's context (its OpenTelemetry span, ~5 KB) alive for the
    whole timeout, so at 700 requests/s and a 30 s timeout ~20,000 finished requests are held at any
    time: resident memory climbs for the first `timeout` seconds of load. Here the timer runs in an
    empty context and is cancelled as soon as the request is answered; a request whose handler fails
    before answering is released at once instead of waiting out the timeout.

    It is the outermost of the project's middlewares, so it also sees BentoML's own `traffic.max_concurrency`
    refusal (a 429 without Retry-After): it adds the header and counts the request as shed.
    """

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    @staticmethod
    def _expire(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def answered(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        async def send_and_note(message: Any) -> None:
            answered()
            if message["type"] == "http.response.start" and message["status"] == 429:
                message = with_retry_after(message)
            await send(message)

        timer = loop.call_later(self.timeout, self._expire, waiter, context=contextvars.Context())
        task = asyncio.ensure_future(self.app(scope, receive, send_and_note))
        task.add_done_callback(answered)
        try:
            await waiter
        except TimeoutError:
            if task.cancel():
                await send_json(send, 504, {"error": f"Not able to process the request in {self.timeout} seconds"})
                return
        finally:
            timer.cancel()
        await task


def with_retry_after(start: dict[str, Any]) -> dict[str, Any]:
    """A 429 response start with a Retry-After: BentoML's MaxConcurrencyMiddleware sends none (then the request
    is counted as shed); one that has it (the feedback rate limit) is left as it is."""
    headers = list(start.get("headers", ()))
    if any(name.lower() == b"retry-after" for name, _ in headers):
        return start
    requests_shed_total.labels(reason="max_concurrency").inc()
    return {**start, "headers": [*headers, (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]}


class RequestGuard:
    """Refuse, before the app reads a body: one over max_bytes (413), and a POST body that is not JSON (415)
    unless it is a V2 body with binary tensors (application/octet-stream with Inference-Header-Content-Length).

    A declared Content-Length over the limit is refused before any of the body is read. A chunked body
    (Transfer-Encoding wins over Content-Length) has no declared size, so it is read here, counted as it
    arrives, and refused (413, the same JSON object) as soon as it passes the limit; under the limit it is
    handed to the app as it came. So every route answers an oversized body alike, however it was sent: an
    error raised from inside the app's `receive` would reach BentoML's typed routes (which answer a JSON
    list) and FastAPI's V2 routes (a 500) differently. POST bodies must be JSON because BentoML would
    otherwise try its multipart or pickle readers (a multipart type without a boundary ends in a 500); a
    request without a Content-Type is read as JSON, as BentoML does. One middleware with one pass over
    the headers: it runs per request. Under `form_paths` (the web UI, whose file upload is a form) a POST
    may also be multipart/form-data: the UI's own app reads those, not BentoML, and the size limit holds.
    """

    def __init__(self, app: Any, max_bytes: int, form_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.form_paths = form_paths

    def _too_large(self) -> dict[str, Any]:
        limit = self.max_bytes
        return {"error": f"request body is larger than the limit of {limit} bytes", "limit_bytes": limit}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type, declared, chunked, binary = b"application/json", b"", False, False
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"inference-header-content-length":
                binary = True
        if scope.get("method") == "POST":
            media_type = content_type.split(b";")[0].strip().lower()
            # A V2 body with binary tensors after its JSON part (Inference-Header-Content-Length says where the
            # JSON ends) is not JSON as a whole: KServe's client sends it as application/octet-stream.
            binary_v2 = binary and media_type == b"application/octet-stream" and scope["path"].startswith("/v2/")
            form = media_type == b"multipart/form-data" and scope["path"].startswith(self.form_paths)
            if media_type != b"application/json" and not media_type.endswith(b"+json") and not binary_v2 and not form:
                refusal = (
                    f"Content-Type {media_type.decode(errors='replace')!r} is not accepted: "
                    "send the request body as JSON with Content-Type: application/json"
                )
                await send_json(send, 415, {"error": refusal})
                return
        length = int(declared) if declared.isdigit() else None
        if length is not None and length > self.max_bytes:
            await send_json(send, 413, self._too_large())
            return
        if not chunked:  # no body, or one whose declared length the HTTP parser holds it to
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await send_json(send, 413, self._too_large(), [(b"connection", b"close")])
                return
            if not message.get("more_body", False):
                break
        whole: list[Any] = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replay() -> Any:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)
