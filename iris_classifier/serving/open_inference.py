"""The Open Inference Protocol (KServe V2) over REST: requests to rows of cm, answers and errors as the spec says.

Spec: https://github.com/kserve/open-inference-protocol (REST: health, metadata, inference). The
model takes one input tensor `measurements_cm` of shape [N, 4] (FP64 or FP32, data flat or nested
row-major) and gives `probabilities` (FP64, [N, 3]) and `species` (BYTES, [N]). The measurement
rules and the batch limit are the schema's own (`Measurement`, `MAX_BATCH_FLOWERS`). Errors are
`ProtocolError`s, answered as `{"error": "..."}` with a 4xx status, never a 5xx.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import Path
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_BATCH_FLOWERS, MODEL_NAME, SPECIES, Measurement

INPUT_NAME = "measurements_cm"
PROBABILITIES, SPECIES_OUTPUT = "probabilities", "species"
OUTPUT_NAMES: tuple[str, ...] = (PROBABILITIES, SPECIES_OUTPUT)
# JSON numbers are read as float64; FP32 values are rounded to float32 first, as the client's tensor holds them.
INPUT_DATATYPES: dict[str, type[np.floating]] = {"FP64": np.float64, "FP32": np.float32}
# The Triton extensions a client may ask for; this server answers only in JSON.
BINARY_HEADER = "inference-header-content-length"
BINARY_HINT = (
    "the binary tensor data extension is not supported: send 'data' as JSON and ask for JSON outputs "
    "(tritonclient: set_data_from_numpy(..., binary_data=False) and InferRequestedOutput(name, binary_data=False))"
)
SERVER_NAME = "bentoml"

# Measurement's own rules (type, finite, > 0, <= MAX_MEASUREMENT_CM) over a whole tensor's values.
MEASUREMENTS = TypeAdapter(list[Measurement])


class ProtocolError(Exception):
    """A request the protocol refuses: answered with `status` and `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message})

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type="application/json")


# ---- the JSON objects of the spec, as pydantic models: they validate requests and document /docs.json ----

# A parameter's value is a string, a number or a boolean ($parameters in the spec).
Parameters = dict[str, StrictStr | StrictInt | StrictFloat | StrictBool]
# An optional field of an answer, documented without OpenAPI 3.1's "null" type. (Optional request fields
# default to None but are typed without None: a null is refused like any other wrong type.)
Absent = SkipJsonSchema[None]

EXAMPLE_ROWS = [[EXAMPLE_FLOWERS[species][name] for name in FEATURES] for species in SPECIES]
TensorData = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "description": (
                f"the [N, {len(FEATURES)}] measurements in row-major order: flat (N x {len(FEATURES)} numbers) "
                f"or nested (N rows of {len(FEATURES)}); each in cm, columns {', '.join(FEATURES)}"
            ),
            "items": {
                "oneOf": [
                    MEASUREMENTS.json_schema()["items"],
                    {
                        "type": "array",
                        "items": MEASUREMENTS.json_schema()["items"],
                        "minItems": len(FEATURES),
                        "maxItems": len(FEATURES),
                    },
                ]
            },
            "example": EXAMPLE_ROWS,
        }
    ),
]


class ErrorResponse(BaseModel):
    """Any failed request ($inference_error_response and its metadata twins)."""

    error: str = Field(description="what is wrong with the request", examples=["unknown model 'resnet'"])


class RequestInput(BaseModel):
    """The one input tensor ($request_input)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Literal["measurements_cm"], WithJsonSchema({"type": "string", "enum": [INPUT_NAME]})] = Field(
        description="the input tensor's name"
    )
    shape: list[Annotated[int, Field(strict=True, ge=0)]] = Field(
        description=f"[N, {len(FEATURES)}] with 1 <= N <= {MAX_BATCH_FLOWERS}", min_length=2, max_length=2
    )
    datatype: Literal["FP64", "FP32"] = Field(description="FP64 or FP32")
    parameters: Parameters = Field(default=None)
    data: TensorData


class RequestOutput(BaseModel):
    """An output the client wants back ($request_output)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["probabilities", "species"]
    parameters: Parameters = Field(default=None)


class InferenceRequest(BaseModel):
    """An inference request ($inference_request)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "id": "42",
                "inputs": [{"name": INPUT_NAME, "shape": [3, len(FEATURES)], "datatype": "FP64", "data": EXAMPLE_ROWS}],
                "outputs": [{"name": PROBABILITIES}, {"name": SPECIES_OUTPUT}],
            }
        },
    )

    id: StrictStr = Field(default=None, description="returned in the response")
    # Not in the spec, but KServe's SDK (InferRequest.to_rest) always sends it.
    model_name: StrictStr = Field(default=None, description="optional; if given, the model in the URL")
    parameters: Parameters = Field(default=None)
    inputs: list[RequestInput] = Field(min_length=1, max_length=1, description=f"exactly one: {INPUT_NAME}")
    outputs: list[RequestOutput] = Field(default=None, description="the outputs to return; all if absent")


class ResponseOutput(BaseModel):
    """An output tensor ($response_output)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | Absent = None
    data: list[float | str] = Field(description="row-major, flat")


class InferenceResponse(BaseModel):
    """An inference response ($inference_response)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model_name": MODEL_NAME,
                "model_version": "5kq36xxkxc4u2ax4",
                "id": "42",
                "outputs": [
                    {"name": PROBABILITIES, "shape": [1, 3], "datatype": "FP64", "data": [1.0, 0.0, 0.0]},
                    {"name": SPECIES_OUTPUT, "shape": [1], "datatype": "BYTES", "data": ["setosa"]},
                ],
            }
        }
    )

    model_name: str
    model_version: str
    id: str | Absent = None
    parameters: Parameters | Absent = None
    outputs: list[ResponseOutput]


class ServerMetadata(BaseModel):
    """$metadata_server_response."""

    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    """$metadata_tensor; `parameters` names the columns (as MLServer's metadata does)."""

    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension")
    parameters: Parameters | Absent = None


class ModelMetadata(BaseModel):
    """$metadata_model_response."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


# ---- health and metadata ----


def server_metadata() -> dict[str, Any]:
    import bentoml

    return ServerMetadata(name=SERVER_NAME, version=bentoml.__version__, extensions=[]).model_dump()


def model_metadata(*, version: str, backend: str) -> dict[str, Any]:
    columns = {"columns": ",".join(FEATURES), "unit": "cm"}
    metadata = ModelMetadata(
        name=MODEL_NAME,
        versions=[version],
        platform={"onnx": "onnxruntime_onnx", "sklearn": "sklearn"}.get(backend, backend),
        inputs=[MetadataTensor(name=INPUT_NAME, datatype="FP64", shape=[-1, len(FEATURES)], parameters=columns)],
        outputs=[
            MetadataTensor(
                name=PROBABILITIES, datatype="FP64", shape=[-1, len(SPECIES)], parameters={"columns": ",".join(SPECIES)}
            ),
            MetadataTensor(name=SPECIES_OUTPUT, datatype="BYTES", shape=[-1]),
        ],
    )
    return metadata.model_dump(exclude_none=True)


def check_model(model_name: str, model_version: str | None, *, served_version: str) -> None:
    """Refuse (404) a model or a version this server does not serve."""
    if model_name != MODEL_NAME:
        raise ProtocolError(f"unknown model {model_name!r}: this server serves {MODEL_NAME!r}", 404)
    if model_version is not None and model_version != served_version:
        raise ProtocolError(
            f"unknown version {model_version!r} of model {MODEL_NAME!r}: the served version is {served_version!r}", 404
        )


# ---- inference ----


def describe(errors: Sequence[dict[str, Any]]) -> str:
    """pydantic's errors as one line: where (a JSON path), what rule, and the value refused."""
    parts = []
    for error in errors:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.get("loc", ()))
        refused = error.get("input")
        shown = "" if isinstance(refused, (dict, list)) else f" (got {refused!r})"
        parts.append(f"{where.lstrip('.') or 'body'}: {error['msg']}{shown}")
    return "; ".join(parts)


def _refuse_binary(parameters: dict[str, Any] | None, where: str, *flags: str) -> None:
    for flag in flags:
        if parameters and parameters.get(flag) not in (None, False):
            raise ProtocolError(f"{where}parameters.{flag}: {BINARY_HINT}")


def parse_infer_request(body: bytes, headers: Mapping[str, str] | None = None) -> tuple[InferenceRequest, np.ndarray]:
    """The request and its rows: an (N, 4) float64 array of cm that passed every rule, or a ProtocolError."""
    if headers and BINARY_HEADER in {name.lower() for name in headers}:
        raise ProtocolError(f"Inference-Header-Content-Length header: {BINARY_HINT}")
    try:
        request = InferenceRequest.model_validate_json(body)
    except ValidationError as error:
        raise ProtocolError(describe(error.errors(include_url=False))) from None
    if request.model_name is not None and request.model_name != MODEL_NAME:
        raise ProtocolError(f"model_name: the body names model {request.model_name!r}, the URL {MODEL_NAME!r}")
    _refuse_binary(request.parameters, "", "binary_data_output")
    (tensor,) = request.inputs
    _refuse_binary(tensor.parameters, "inputs[0].", "binary_data_size")
    names = [output.name for output in request.outputs or ()]
    for index, output in enumerate(request.outputs or ()):
        _refuse_binary(output.parameters, f"outputs[{index}].", "binary_data")
        _refuse_binary(output.parameters, f"outputs[{index}].", "classification")
        if names.index(output.name) != index:
            raise ProtocolError(f"outputs[{index}].name: output {output.name!r} is requested twice")
    return request, _rows(tensor)


def _rows(tensor: RequestInput) -> np.ndarray:
    n, width = tensor.shape
    if width != len(FEATURES) or not 1 <= n <= MAX_BATCH_FLOWERS:
        raise ProtocolError(
            f"inputs[0].shape: {tensor.shape} is not [N, {len(FEATURES)}] with 1 <= N <= {MAX_BATCH_FLOWERS} "
            f"(N flowers, {len(FEATURES)} measurements each: {', '.join(FEATURES)})"
        )
    data = tensor.data
    if data and type(data[0]) is list:  # nested: N rows of 4
        if len(data) != n or not all(type(row) is list and len(row) == width for row in data):
            raise ProtocolError(
                f"inputs[0].data: nested data must be {n} rows of {width} numbers to match shape {tensor.shape}"
            )
        data = list(itertools.chain.from_iterable(data))
    if len(data) != n * width:
        raise ProtocolError(
            f"inputs[0].data: {len(data)} values do not match shape {tensor.shape} ({n * width} values)"
        )
    values = _measurements(data)
    if tensor.datatype == "FP32":
        with np.errstate(over="ignore"):  # an FP32 overflow becomes inf, refused below as not finite
            values = values.astype(np.float32).astype(np.float64)
        _measurements(values.tolist(), rounded=" after rounding to FP32")
    return values.reshape(n, width)


def _measurements(values: list[Any], rounded: str = "") -> np.ndarray:
    try:
        return np.array(MEASUREMENTS.validate_python(values), dtype=np.float64)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False)[:3]:
            index = problem["loc"][0]
            row, column = divmod(index, len(FEATURES))
            problems.append(
                f"inputs[0].data value {index} (row {row}, {FEATURES[column]}){rounded}: {problem['msg']}"
                f" (got {problem['input']!r})"
            )
        more = error.error_count() - len(problems)
        raise ProtocolError("; ".join(problems) + (f"; and {more} more" if more > 0 else "")) from None


def infer_response(request: InferenceRequest, probabilities: np.ndarray, species: list[str], *, version: str) -> bytes:
    """The $inference_response as JSON bytes, with the outputs asked for, in the order asked."""
    n = len(probabilities)
    outputs = {
        PROBABILITIES: lambda: {
            "name": PROBABILITIES,
            "shape": [n, len(SPECIES)],
            "datatype": "FP64",
            "data": np.ascontiguousarray(probabilities, dtype=np.float64).ravel(),
        },
        SPECIES_OUTPUT: lambda: {
            "name": SPECIES_OUTPUT,
            "shape": [n],
            "datatype": "BYTES",
            "data": species,
        },
    }
    names = [output.name for output in request.outputs] if request.outputs else list(OUTPUT_NAMES)
    response: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = [outputs[name]() for name in names]
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


# ---- the service's side: one object per service instance, its methods back the thin routes in service.py ----

# Rows of cm -> (probabilities in SPECIES order, the most probable species per row): the service's model call.
Predict = Callable[[np.ndarray], tuple[np.ndarray, list[str]]]
# Below this body size a request is parsed and answered on the event loop (tens of microseconds); above, in a thread.
INLINE_BODY_BYTES = 4096


@dataclass
class OpenInference:
    """The V2 endpoints over one served model: its version, its backend, its readiness and its model call."""

    version: str
    backend: str
    predict: Predict
    is_ready: Callable[[], bool]

    def model_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        try:
            check_model(model_name, model_version, served_version=self.version)
        except ProtocolError as error:
            return error.response()
        return json_response(model_metadata(version=self.version, backend=self.backend))

    def server_ready(self) -> Response:
        return server_health("ready", self.is_ready())

    def model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        try:
            check_model(model_name, model_version, served_version=self.version)
        except ProtocolError as error:
            return error.response()
        return health(self.is_ready())

    async def infer(self, request: Request, model_name: str, model_version: str | None = None) -> Response:
        try:
            check_model(model_name, model_version, served_version=self.version)
        except ProtocolError as error:
            return error.response()
        body = await request.body()
        if len(body) < INLINE_BODY_BYTES:
            return self.answer(body, request.headers)
        return await run_in_threadpool(self.answer, body, request.headers)

    def answer(self, body: bytes, headers: Mapping[str, str]) -> Response:
        try:
            inference, rows = parse_infer_request(body, headers)
        except ProtocolError as error:
            return error.response()
        probabilities, species = self.predict(rows)
        return Response(infer_response(inference, probabilities, species, version=self.version), media_type=JSON)


JSON = "application/json"


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


# ---- what the service's routes share: documentation of each route, and the error answers ----

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


# Health: the status is the answer (200 true, 4xx false) and the body is empty.
class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


LIVE_ROUTE = _route({"model": ServerLive, "description": "live (the status is the answer)"}, "4XX")
READY_ROUTE = _route({"model": ServerReady, "description": "ready (the status is the answer)"}, "4XX")
READY_ROUTE["responses"][400] = {"model": ServerReady, "description": "not ready"}
MODEL_READY_ROUTE = _route({"description": "true"}, 404, "4XX")
MODEL_READY_ROUTE["responses"][400] = {"description": "false: not ready"}
INFER_ROUTE = {
    **_route({"model": InferenceResponse, "description": "the outputs asked for"}, 400, 404, "4XX"),
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


class ErrorBodies:
    """ASGI middleware: every error answer under /v2 carries the spec's `{"error": "..."}` body.

    The V2 routes answer their own errors so; this covers the rest: FastAPI's 405 and 422 (`detail`;
    a 422 becomes the spec's 400) and BentoML's plain-text 404 for a path no route matches (a model
    name with a newline never reaches the routes). Successful answers pass untouched.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
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
