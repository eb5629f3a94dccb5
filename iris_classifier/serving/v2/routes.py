"""What the service's thin V2 routes call (`OpenInference`), how each route is documented, and the middleware
for everything under /v2: it answers inference for the served model itself, and gives the framework's own
errors the spec's form."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Path
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from iris_classifier.domain.schema import MODEL_NAME
from iris_classifier.serving.admission import charged_work
from iris_classifier.serving.answers import REQUEST_ID_HEADER, REQUEST_ID_HEADER_DOC
from iris_classifier.serving.v2.codec import BINARY_HEADER, OCTETS, decoder_for, infer_response
from iris_classifier.serving.v2.dataplane import (  # noqa: F401 (server_metadata, check_model: the routes' API)
    DataPlane,
    check_model,
    model_metadata,
    server_metadata,
)
from iris_classifier.serving.v2.errors import JSON, ProtocolError, describe
from iris_classifier.serving.v2.types import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

# ---- health and metadata ----


def json_response(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), media_type=JSON)


def health(ok: bool) -> Response:
    """The spec's health answer: the status is the answer (200 true, 4xx false), the body empty."""
    return Response(status_code=200 if ok else 400)


def server_health(state: str, ok: bool) -> Response:
    """Server live/ready: the status is the answer, with KServe's `{"live": true}` / `{"ready": true}` body.

    The spec says the body "should be empty"; KServe's own SDK (InferenceRESTClient) reads the answer
    from that body, and tritonclient reads only the status, so this body serves both.
    """
    return Response(orjson.dumps({state: ok}), status_code=200 if ok else 400, media_type=JSON)


# ---- the service's side: one object per service instance, its methods back the thin routes in service.py ----

# Below this body size a request is parsed and answered on the event loop (tens of microseconds); above, in a thread.
INLINE_BODY_BYTES = 4096


@dataclass
class OpenInference(DataPlane):
    """The V2 endpoints over REST: the protocol (dataplane.DataPlane) with HTTP's wire form around it.

    A request the protocol refuses raises ProtocolError, answered by the app's one handler
    (errors.EXCEPTION_HANDLERS).
    """

    request_id: Callable[[], str]  # the id of the request being served, as the prediction log writes it

    def __post_init__(self) -> None:
        # The two paths of inference for the served model, as the middleware matches them (percent-decoded).
        self.infer_paths = {
            f"/v2/models/{MODEL_NAME}/infer",
            f"/v2/models/{MODEL_NAME}/versions/{self.version}/infer",
        }

    def model_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        return json_response(self.metadata(model_name, model_version))

    def server_ready(self) -> Response:
        return server_health("ready", self.is_ready())

    def model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        return health(self.model_is_ready(model_name, model_version))

    async def infer(self, request: Request, model_name: str, model_version: str | None = None) -> Response:
        """The infer route's answer (the middleware answers the served model's infer paths before the route)."""
        check_model(model_name, model_version, served_version=self.version)
        return await self.answer_body(await request.body(), request.headers)

    async def answer_body(self, body: bytes, headers: Mapping[str, str]) -> Response:
        if len(body) < INLINE_BODY_BYTES:
            return self.answer(body, headers)
        return await run_in_threadpool(self.answer_in_thread, body, headers)

    def answer_in_thread(self, body: bytes, headers: Mapping[str, str]) -> Response:
        with charged_work():  # the request's admission charge lasts as long as this work, even past a 504
            return self.answer(body, headers)

    def answer(self, body: bytes, headers: Mapping[str, str]) -> Response:
        request_id = self.request_id()
        inference = self.run(decoder_for(body, headers), request_id)
        answer = infer_response(inference.request, inference.probabilities, inference.species, version=self.version)
        if answer.json_length is None:
            return Response(answer.body, media_type=JSON, headers={REQUEST_ID_HEADER: request_id})
        headers = {REQUEST_ID_HEADER: request_id, BINARY_HEADER: str(answer.json_length)}
        return Response(answer.body, media_type=OCTETS, headers=headers)

    async def serve(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer an ASGI request for one of `infer_paths` (POST) directly: the body read (the request guard
        outside has held it to the size limit), then `answer`; a refusal is the spec's {"error": ...}."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            response = await self.answer_body(b"".join(chunks), Headers(scope=scope))
        except ProtocolError as error:
            response = Response(error.body(), status_code=error.status, media_type=JSON)
        await response(scope, receive, send)


# ---- how each route is documented ----

# "4XX" also keeps FastAPI from documenting a 422 that these routes never answer (they answer 400).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the request breaks the protocol or a measurement rule"},
    404: {"model": ErrorResponse, "description": "unknown model or version"},
    "4XX": {"model": ErrorResponse, "description": "refused: 405 wrong method, 413 body too large, 415 not JSON"},
}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema with its $defs inlined, for an OpenAPI requestBody (no components needed)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


TAGS = ["Open Inference Protocol (V2)"]


def _route(ok: dict[str, Any], *errors: int | str) -> dict[str, Any]:
    responses = {200: ok, **{status: ERROR_RESPONSES[status] for status in errors}}
    return {"tags": TAGS, "response_class": Response, "responses": responses}


SERVER_METADATA_ROUTE = _route({"model": ServerMetadata, "description": "server name, version, extensions"}, "4XX")
MODEL_METADATA_ROUTE = _route(
    {"model": ModelMetadata, "description": "versions, platform, inputs, outputs"}, 404, "4XX"
)
LIVE_ROUTE = _route({"model": ServerLive, "description": "live (the status is the answer)"}, "4XX")
READY_ROUTE = _route({"model": ServerReady, "description": "ready (the status is the answer)"}, "4XX")
READY_ROUTE["responses"][400] = {"model": ServerReady, "description": "not ready"}
MODEL_READY_ROUTE = _route({"description": "true"}, 404, "4XX")
MODEL_READY_ROUTE["responses"][400] = {"description": "false: not ready"}
INFER_ROUTE = {
    **_route(
        {
            "model": InferenceResponse,
            "description": "the outputs asked for",
            "headers": {REQUEST_ID_HEADER: REQUEST_ID_HEADER_DOC},
        },
        400,
        404,
        "4XX",
    ),
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(InferenceRequest.model_json_schema())}},
        }
    },
}

# The path parameters: documented with the one value served (any other is answered 404).
ModelName = Annotated[str, Path(description="the model's name", json_schema_extra={"enum": [MODEL_NAME]})]


def version_in_path(version: str) -> Any:
    """The `model_version` path parameter, documented with the served version."""
    return Annotated[str, Path(description="the model's version", json_schema_extra={"enum": [version]})]


# ---- the framework's own errors under /v2, in the spec's form ----


@dataclass
class Served:
    """The service instance's OpenInference, once the instance is made (the middleware is made before it)."""

    endpoints: OpenInference | None = None


class ErrorBodies:
    """ASGI middleware for everything under /v2: inference for the served model answered here, and every
    error answer given the spec's `{"error": "..."}` body.

    A POST to the served model's infer paths is answered by `served.endpoints` directly: the framework's
    second routing pass (BentoML's routes, then the FastAPI app mounted at "/", its middleware stack, and
    the dependency that hands a route its service instance in a worker thread) cost more than the whole
    one-flower answer. The route stays, documented in /docs.json, and answers the same when reached.

    The V2 routes' own refusals are ProtocolErrors, answered so by their handler; this covers the rest:
    FastAPI's 405 and 422 (`detail`; a 422 becomes the spec's 400) and BentoML's plain-text 404 for a path
    no route matches (a model name with a newline never reaches the routes). Successful answers pass
    untouched.
    """

    def __init__(self, app: Any, served: Served | None = None) -> None:
        self.app = app
        self.served = served or Served()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return
        endpoints = self.served.endpoints
        if endpoints is not None and scope["method"] == "POST" and scope["path"] in endpoints.infer_paths:
            await endpoints.serve(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                else:
                    start.update(message)
                return
            if not start:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status, body = _spec_error(scope, start["status"], b"".join(chunks))
            headers = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type")
            ]
            headers += [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def _spec_error(scope: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """An error answer's status and body in the spec's form (a body that already is one is kept)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = body.decode(errors="replace").strip()
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return status, body
    detail = document.get("detail", document) if isinstance(document, dict) else document
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        detail = describe(detail)
    where = f"{scope.get('method', 'GET')} {scope['path']}"
    return (400 if status == 422 else status), orjson.dumps({"error": f"{where}: {detail}"})
