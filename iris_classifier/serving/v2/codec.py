"""Request bodies -> an InferenceRequest and its rows of cm; probabilities and species -> response bodies.

Decoding has two halves, so a second body format can sit next to the JSON one: a `RequestDecoder` reads a
body into the request and each input tensor's values, flat and row-major; the rules every tensor obeys
whatever its form (shape, count, the measurement rules, FP32 rounding) are applied to those values here.
JSON is the one form served. A request in Triton's binary tensor data extension (the length of its JSON
part in the Inference-Header-Content-Length header, each tensor's bytes after that part) is refused naming
the extension; its decoder would split the body at that length, read the JSON part as an InferenceRequest
and each input's `binary_data_size` bytes as its values, and be returned by `decoder_for`. Answers are JSON
only too: a request asking for binary outputs is refused the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson
from pydantic import ValidationError

from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS, MODEL_NAME, SPECIES
from iris_classifier.serving.v2.errors import ProtocolError, describe
from iris_classifier.serving.v2.types import (
    MEASUREMENTS,
    OUTPUT_NAMES,
    PROBABILITIES,
    SPECIES_OUTPUT,
    InferenceRequest,
    RequestInput,
)

# The Triton extensions a client may ask for; this server answers only in JSON.
BINARY_HEADER = "inference-header-content-length"
BINARY_HINT = (
    "the binary tensor data extension is not supported: send 'data' as JSON and ask for JSON outputs "
    "(tritonclient: set_data_from_numpy(..., binary_data=False) and InferRequestedOutput(name, binary_data=False))"
)


class RequestDecoder(Protocol):
    """One form of request body."""

    def request(self, body: bytes) -> InferenceRequest:
        """The request, held to the spec's shapes (a ProtocolError names what breaks them)."""

    def values(self, tensor: RequestInput) -> Sequence[Any]:
        """The tensor's values, flat in row-major order; the measurement rules are checked after."""


class JSONDecoder:
    """The protocol's own form: the request is JSON, each tensor's values in its `data`, flat or nested."""

    def request(self, body: bytes) -> InferenceRequest:
        try:
            return InferenceRequest.model_validate_json(body)
        except ValidationError as error:
            raise ProtocolError(describe(error.errors(include_url=False))) from None

    def values(self, tensor: RequestInput) -> Sequence[Any]:
        _refuse_binary(tensor.parameters, "inputs[0].", "binary_data_size")
        n, width = tensor.shape
        data = tensor.data
        if data and type(data[0]) is list:  # nested: N rows of 4
            if len(data) != n or not all(type(row) is list and len(row) == width for row in data):
                raise ProtocolError(
                    f"inputs[0].data: nested data must be {n} rows of {width} numbers to match shape {tensor.shape}"
                )
            return list(itertools.chain.from_iterable(data))
        return data


JSON_DECODER = JSONDecoder()


def decoder_for(headers: Mapping[str, str] | None) -> RequestDecoder:
    """The decoder for the body's form: JSON, unless the request announces Triton's binary tensor extension."""
    if headers and BINARY_HEADER in {name.lower() for name in headers}:
        raise ProtocolError(f"Inference-Header-Content-Length header: {BINARY_HINT}")
    return JSON_DECODER


def parse_infer_request(body: bytes, headers: Mapping[str, str] | None = None) -> tuple[InferenceRequest, np.ndarray]:
    """The request and its rows: an (N, 4) float64 array of cm that passed every rule, or a ProtocolError."""
    decoder = decoder_for(headers)
    request = decoder.request(body)
    _check_request(request)
    (tensor,) = request.inputs
    _check_shape(tensor)
    return request, _rows(decoder.values(tensor), tensor)


def _refuse_binary(parameters: dict[str, Any] | None, where: str, *flags: str) -> None:
    for flag in flags:
        if parameters and parameters.get(flag) not in (None, False):
            raise ProtocolError(f"{where}parameters.{flag}: {BINARY_HINT}")


def _check_request(request: InferenceRequest) -> None:
    """What the request asks beyond its tensor: this model, outputs this server gives, each once, in JSON."""
    if request.model_name is not None and request.model_name != MODEL_NAME:
        raise ProtocolError(f"model_name: the body names model {request.model_name!r}, the URL {MODEL_NAME!r}")
    _refuse_binary(request.parameters, "", "binary_data_output")
    names = [output.name for output in request.outputs or ()]
    for index, output in enumerate(request.outputs or ()):
        _refuse_binary(output.parameters, f"outputs[{index}].", "binary_data", "classification")
        if names.index(output.name) != index:
            raise ProtocolError(f"outputs[{index}].name: output {output.name!r} is requested twice")


def _check_shape(tensor: RequestInput) -> None:
    n, width = tensor.shape
    if width != len(FEATURES) or not 1 <= n <= MAX_BATCH_FLOWERS:
        raise ProtocolError(
            f"inputs[0].shape: {tensor.shape} is not [N, {len(FEATURES)}] with 1 <= N <= {MAX_BATCH_FLOWERS} "
            f"(N flowers, {len(FEATURES)} measurements each: {', '.join(FEATURES)})"
        )


def _rows(data: Sequence[Any], tensor: RequestInput) -> np.ndarray:
    """The flat values as (N, 4) float64 cm, held to Measurement's rules as the client's datatype holds them."""
    n, width = tensor.shape
    if len(data) != n * width:
        raise ProtocolError(
            f"inputs[0].data: {len(data)} values do not match shape {tensor.shape} ({n * width} values)"
        )
    values = _measurements(data)
    if tensor.datatype == "FP32":  # JSON numbers are read as float64; an FP32 tensor holds them rounded
        with np.errstate(over="ignore"):  # an FP32 overflow becomes inf, refused below as not finite
            values = values.astype(np.float32).astype(np.float64)
        _measurements(values.tolist(), rounded=" after rounding to FP32")
    return values.reshape(n, width)


def _measurements(values: Sequence[Any], rounded: str = "") -> np.ndarray:
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
