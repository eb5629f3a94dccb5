"""ASGI middlewares of the service: the request guard (size, JSON only) and the response-start timeout."""

from __future__ import annotations

import asyncio
import contextvars
import json
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

# A full batch of 10,000 flowers is about 900 kB of JSON; 2 MiB leaves room for formatting.
MAX_BODY_BYTES = 2 * 1024 * 1024


async def send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    """Answer an ASGI request with a small JSON body, from a middleware."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
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


class BodyTooLarge(BentoMLException):
    """A chunked body grew past the limit (BentoML answers it with this status and message)."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class RequestGuard:
    """Refuse, before BentoML reads a body: one over max_bytes (413), and a POST body that is not JSON (415).

    Bodies are refused before they are read into memory. A declared Content-Length is enforced by the
    HTTP parser, so only a chunked body (Transfer-Encoding wins over Content-Length) is counted as it
    arrives. POST bodies must be JSON because BentoML would otherwise try its multipart or pickle
    readers (a multipart type without a boundary ends in a 500); a request without a Content-Type is
    read as JSON, as BentoML does. One middleware with one pass over the headers: it runs per request.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> dict[str, Any]:
        limit = self.max_bytes
        return {"error": f"request body is larger than the limit of {limit} bytes", "limit_bytes": limit}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type, declared, chunked = b"application/json", b"", False
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if scope.get("method") == "POST":
            media_type = content_type.split(b";")[0].strip().lower()
            if media_type != b"application/json" and not media_type.endswith(b"+json"):
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
        if length is not None and not chunked:
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self._too_large()["error"])
            return message

        await self.app(scope, counting_receive, send)
