"""Pieces of the HTTP service kept out of service.py: which model to serve, limits and middlewares."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

from iris_classifier.model import read_model_info
from iris_classifier.paths import MODEL_INFO

# A full batch of 10,000 flowers is about 900 kB of JSON; 2 MiB leaves room for formatting.
MAX_BODY_BYTES = 2 * 1024 * 1024


def server_settings() -> dict[str, Any]:
    """The BentoML server settings of the service, shared by the benchmark's contenders.

    One worker: a second competes with the load generator for this machine's two cores.
    Access log and CORS off (IRIS_ACCESS_LOG=true turns the log on). The `traffic.timeout` is
    enforced by `PromptTimeout`, installed here so every service that uses these settings gets it.
    """
    install_prompt_timeout()
    return {
        "workers": int(os.environ.get("IRIS_WORKERS", "1")),
        "traffic": {"timeout": 30},
        "logging": {"access": {"enabled": os.environ.get("IRIS_ACCESS_LOG", "false") == "true"}},
        "http": {"cors": {"enabled": False}},
    }


async def send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    """Answer an ASGI request with a small JSON body, from a middleware."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PromptTimeout:
    """BentoML's `traffic.timeout` (504 when no response has started in time), minus its memory cost.

    BentoML 1.4.40's TimeoutMiddleware schedules `loop.call_later(timeout, ...)` per request and never
    cancels it. Each timer keeps the request's context (its OpenTelemetry span, ~5 KB) alive for the
    whole timeout, so at 700 requests/s and a 30 s timeout ~20,000 finished requests are held at any
    time: resident memory climbs for the first `timeout` seconds of load. Here the timer runs in an
    empty context and is cancelled as soon as the request is answered; a request whose handler fails
    before answering is released at once instead of waiting out the timeout.
    """

    replaces: type | None = None  # BentoML's own middleware, once installed

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


def install_prompt_timeout() -> None:
    """Make BentoML build its timeout middleware from `PromptTimeout` (it imports the name per app)."""
    from bentoml._internal.server.http import traffic

    if traffic.TimeoutMiddleware is not PromptTimeout:
        PromptTimeout.replaces = traffic.TimeoutMiddleware
        traffic.TimeoutMiddleware = PromptTimeout  # type: ignore[misc]


def model_tag_to_serve() -> str:
    """IRIS_MODEL_TAG if set, else the tag the pipeline recorded in models/model.json."""
    tag = os.environ.get("IRIS_MODEL_TAG")
    if tag:
        return tag
    try:
        return read_model_info(MODEL_INFO)["tag"]
    except FileNotFoundError:
        raise SystemExit(
            "no model to serve: models/model.json is missing. Run `make pipeline` (trains, or pulls from the "
            "DVC remote) or set IRIS_MODEL_TAG to a tag in the BentoML store"
        ) from None


def freeze_heap() -> None:
    """Move everything loaded so far out of the cyclic GC's reach.

    BentoML, Gradio and friends leave ~300k long-lived objects; without this, a full collection
    triggered by a 10,000-flower batch walks them all and stalls the worker for 200+ ms.
    """
    import gc

    if os.environ.get("IRIS_GC_FREEZE", "1") == "0":  # for A/B measurements only
        return
    gc.collect()
    gc.freeze()


def stored_model_metadata(tag: str) -> dict[str, Any]:
    """The model's metadata from the BentoML store, or exit with what to run to get the model."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return dict(bentoml.models.get(tag).info.metadata)
    except NotFound:
        raise SystemExit(
            f"model {tag} is not in the BentoML store ({os.environ.get('BENTOML_HOME', '~/bentoml')}): "
            "run `make pipeline` to train it, or `make model-import` after `dvc pull`"
        ) from None


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


def openapi_30(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the generated document valid OpenAPI 3.0 and true to what the service answers.

    pydantic writes JSON Schema 2020-12 bounds (`exclusiveMinimum: 0`); OpenAPI 3.0 wants
    `minimum: 0, exclusiveMinimum: true`. Request bodies are required. BentoML documents a 400's
    `detail` as a string, while a validation error carries a list of {loc, msg, type} objects
    naming each field and rule.
    """

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
                value = node.get(flag)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    node[bound] = value
                    node[flag] = True
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    # Every POST needs its JSON body (an empty one is refused naming the missing fields).
    for operations in spec.get("paths", {}).values():
        body = operations.get("post", {}).get("requestBody")
        if body is not None:
            body["required"] = True
    invalid = spec.get("components", {}).get("schemas", {}).get("InvalidArgument", {})
    if "detail" in invalid.get("properties", {}):
        invalid["properties"]["detail"] = {
            "title": "Error Detail",
            "description": "a message, or one {loc, msg, type} object per invalid field",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            ],
        }
    return spec


class OpenAPI30Fixes:
    """Serve /docs.json through `openapi_30`; every other path passes untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/docs.json":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    if start.get("status") == 200:
                        body = json.dumps(openapi_30(json.loads(body))).encode()
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
