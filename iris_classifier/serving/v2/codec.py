"""Request bodies -> an InferenceRequest and its rows of cm; probabilities and species -> response bodies.

Two body forms are read. JSON, the protocol's own: each tensor's values in its `data`. And Triton's binary
tensor data extension (KServe implements it too; tritonclient's default): the length of the JSON part in
the Inference-Header-Content-Length header, each input's little-endian bytes after that part, as many as its
`parameters.binary_data_size` says. A `RequestDecoder` per form reads the body into the request and the
tensor's values, flat and row-major; the rules every tensor obeys whatever its form (shape, count, the
measurement rules, FP32 rounding) are applied to those values here. Answers are JSON, and an output is sent
in binary (its bytes after the JSON part, `binary_data_size` in its parameters) when the request asks:
`binary_data` on that output, else `binary_data_output` on the request.

Valid JSON tensors take a fast path (orjson, then numpy over the whole tensor); any request it is not sure
of is read again by pydantic, which judges and explains it, so both paths accept exactly the same requests.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
from pydantic import ValidationError

from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS, MAX_MEASUREMENT_CM, MODEL_NAME, SPECIES
from iris_classifier.serving.v2.errors import ProtocolError, describe
from iris_classifier.serving.v2.types import (
    MEASUREMENTS,
    OUTPUT_NAMES,
    PROBABILITIES,
    SPECIES_OUTPUT,
    InferenceRequest,
    RequestInput,
)

BINARY_HEADER = "Inference-Header-Content-Length"  # the extension's header: the length of the JSON part
BINARY_EXTENSION = "binary_tensor_data"  # its name in the server metadata's `extensions`
OCTETS = "application/octet-stream"  # the media type of an answer with binary outputs (as Triton sends it)
# Bytes per value, little-endian, for each datatype the input accepts.
INPUT_DTYPES = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}
# A BYTES element in binary: its length as a 4-byte little-endian unsigned integer, then its bytes.
SPECIES_BYTES = {name: struct.pack("<I", len(name.encode())) + name.encode() for name in SPECIES}
_DIGITS = re.compile(r"[0-9]{1,15}")  # a byte count; 15 digits is far past the body-size limit


class RequestDecoder(Protocol):
    """One form of request body."""

    def request(self) -> InferenceRequest:
        """The request, held to the spec's shapes (a ProtocolError names what breaks them)."""

    where: str  # how an error names the tensor's values

    def values(self, tensor: RequestInput) -> Sequence[Any] | np.ndarray:
        """The tensor's values, flat in row-major order: a float64 array only when all N x 4 passed every
        measurement rule, else a sequence the rules are checked (and explained) on after."""


@dataclass
class JSONDecoder:
    """The protocol's own form: the request is JSON, each tensor's values in its `data`, flat or nested."""

    body: bytes
    where = "inputs[0].data"
    _rows: np.ndarray | None = field(default=None, init=False)  # from the fast path, when it was sure

    def request(self) -> InferenceRequest:
        fast = self._fast_request()
        if fast is not None:
            return fast
        try:
            return InferenceRequest.model_validate_json(self.body)
        except ValidationError as error:
            raise ProtocolError(describe(error.errors(include_url=False))) from None

    def values(self, tensor: RequestInput) -> Sequence[Any] | np.ndarray:
        if self._rows is not None:
            return self._rows
        if tensor.parameters and "binary_data_size" in tensor.parameters:
            raise ProtocolError(
                f"inputs[0].parameters.binary_data_size: binary tensor data needs the {BINARY_HEADER} "
                "header (the length of the JSON part of the body); without it the whole body is JSON"
            )
        if tensor.data is None:
            raise ProtocolError("inputs[0].data: the tensor's values are missing (send data, or binary tensor data)")
        n, width = tensor.shape
        data = tensor.data
        if data and type(data[0]) is list:  # nested: N rows of 4
            if len(data) != n or not all(type(row) is list and len(row) == width for row in data):
                raise ProtocolError(
                    f"inputs[0].data: nested data must be {n} rows of {width} numbers to match shape {tensor.shape}"
                )
            return list(itertools.chain.from_iterable(data))
        return data

    def _fast_request(self) -> InferenceRequest | None:
        """The request when it is certainly valid JSON whose tensor passes every rule, else None (pydantic
        then reads the body and says what is wrong). The tensor's values are checked here as one array."""
        try:
            document = orjson.loads(self.body)
            tensor = document["inputs"][0]
            data = tensor.pop("data")
        except (orjson.JSONDecodeError, TypeError, KeyError, IndexError, AttributeError):
            return None
        if type(data) is not list or type(document) is not dict:
            return None
        try:
            request = InferenceRequest.model_validate(document)
        except ValidationError:
            return None
        tensor = request.inputs[0]
        if tensor.parameters and "binary_data_size" in tensor.parameters:
            return None
        n, width = tensor.shape
        rows = _number_rows(data, n, width, tensor.datatype)
        if rows is None:
            return None
        self._rows = rows
        return request


@dataclass
class BinaryDecoder:
    """Triton's binary tensor data extension: a JSON part of `json_length` bytes, then each input's raw bytes."""

    body: bytes
    json_length: int
    where = "inputs[0] binary"

    def request(self) -> InferenceRequest:
        if self.json_length > len(self.body):
            raise ProtocolError(
                f"{BINARY_HEADER} header: {self.json_length} bytes of JSON, but the body has only "
                f"{len(self.body)} bytes"
            )
        try:
            return InferenceRequest.model_validate_json(self.body[: self.json_length])
        except ValidationError as error:
            raise ProtocolError(
                f"the JSON part (the first {self.json_length} bytes): {describe(error.errors(include_url=False))}"
            ) from None

    def values(self, tensor: RequestInput) -> Sequence[Any] | np.ndarray:
        binary = len(self.body) - self.json_length
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:  # its values in JSON after all: then nothing may follow the JSON part
            if binary:
                raise ProtocolError(
                    f"body: {binary} bytes follow the JSON part, but no input has parameters.binary_data_size"
                )
            return JSONDecoder(b"").values(tensor)
        if tensor.data is not None:
            raise ProtocolError("inputs[0]: both data and parameters.binary_data_size; send the values once")
        if type(size) is not int or size < 0:
            raise ProtocolError(f"inputs[0].parameters.binary_data_size: {size!r} is not a number of bytes")
        check_raw_size(size, tensor, "inputs[0].parameters.binary_data_size")
        if binary != size:
            what = "missing" if binary < size else "trailing"
            raise ProtocolError(
                f"body: {binary} bytes follow the JSON part, but binary_data_size says {size} ({what} bytes)"
            )
        return raw_values(memoryview(self.body)[self.json_length :], tensor, "inputs[0].parameters.binary_data_size")


def check_raw_size(size: int, tensor: RequestInput, where: str) -> None:
    """A tensor's raw bytes number exactly what its shape and datatype say."""
    n, width = tensor.shape
    dtype = INPUT_DTYPES[tensor.datatype]
    expected = n * width * dtype.itemsize
    if size != expected:
        raise ProtocolError(
            f"{where}: {size} bytes do not match shape {tensor.shape} of "
            f"{tensor.datatype} ({n} x {width} x {dtype.itemsize} = {expected} bytes)"
        )


def raw_values(raw: bytes | memoryview, tensor: RequestInput, where: str) -> Sequence[Any] | np.ndarray:
    """A tensor's values from its raw bytes (little-endian, row-major; HTTP's binary extension, gRPC's raw
    contents), as `RequestDecoder.values` gives them."""
    check_raw_size(len(raw), tensor, where)
    values = np.frombuffer(raw, dtype=INPUT_DTYPES[tensor.datatype]).astype(np.float64)
    return values if passes(values) else values.tolist()  # FP32 bytes are float32 values already


def decoder_for(body: bytes, headers: Mapping[str, str] | None) -> RequestDecoder:
    """The decoder for the body's form: binary when the request carries Inference-Header-Content-Length."""
    key = BINARY_HEADER.lower()
    length = next((value for name, value in (headers or {}).items() if name.lower() == key), None)
    if length is None:
        return JSONDecoder(body)
    if not _DIGITS.fullmatch(length.strip()):
        raise ProtocolError(f"{BINARY_HEADER} header: {length[:40]!r} is not a number of bytes")
    return BinaryDecoder(body, int(length))


def parse_infer_request(body: bytes, headers: Mapping[str, str] | None = None) -> tuple[InferenceRequest, np.ndarray]:
    """The request and its rows: an (N, 4) float64 array of cm that passed every rule, or a ProtocolError."""
    return decode(decoder_for(body, headers))


def decode(decoder: RequestDecoder) -> tuple[InferenceRequest, np.ndarray]:
    """Any transport's request (a decoder of its wire form) -> the request and its rows, held to every rule."""
    request = decoder.request()
    _check_request(request)
    (tensor,) = request.inputs
    _check_shape(tensor)
    values = decoder.values(tensor)
    if isinstance(values, np.ndarray):
        return request, values.reshape(tensor.shape)
    return request, _rows(values, tensor, decoder.where)


def _number_rows(data: list[Any], n: int, width: int, datatype: str) -> np.ndarray | None:
    """`data` (flat or nested) as flat float64 values when every one is a JSON number that passes the
    measurement rules as `datatype` holds it; None when any might not (the slow path then explains)."""
    if not data:
        return None
    if type(data[0]) is list:
        if len(data) != n or set(map(type, data)) != {list} or set(map(len, data)) != {width}:
            return None
        kinds = set(map(type, itertools.chain.from_iterable(data)))
    else:
        if len(data) != n * width:
            return None
        kinds = set(map(type, data))
    if not kinds <= {float, int}:  # bool, str, None, dict... are pydantic's to refuse
        return None
    try:
        values = np.array(data, dtype=np.float64).reshape(-1)
    except (OverflowError, ValueError):
        return None
    if not passes(values):
        return None
    if datatype == "FP32":
        with np.errstate(over="ignore"):
            values = values.astype(np.float32).astype(np.float64)
        if not passes(values):
            return None
    return values


def passes(values: np.ndarray) -> bool:
    """Every value a finite number > 0 and <= MAX_MEASUREMENT_CM (Measurement's rules, over an array): NaN
    fails both comparisons and an infinity one of them."""
    return bool(((values > 0) & (values <= MAX_MEASUREMENT_CM)).all())


def _check_request(request: InferenceRequest) -> None:
    """What the request asks beyond its tensor: this model, outputs this server gives, each once."""
    if request.model_name is not None and request.model_name != MODEL_NAME:
        raise ProtocolError(f"model_name: the body names model {request.model_name!r}, the URL {MODEL_NAME!r}")
    _flag(request.parameters, "binary_data_output", "parameters.")
    names = [output.name for output in request.outputs or ()]
    for index, output in enumerate(request.outputs or ()):
        if output.parameters and output.parameters.get("classification") not in (None, False, 0):
            raise ProtocolError(
                f"outputs[{index}].parameters.classification: the classification extension is not supported; "
                "ask for the probabilities and species outputs"
            )
        _flag(output.parameters, "binary_data", f"outputs[{index}].parameters.")
        if names.index(output.name) != index:
            raise ProtocolError(f"outputs[{index}].name: output {output.name!r} is requested twice")


def _flag(parameters: dict[str, Any] | None, name: str, where: str) -> None:
    """A true/false parameter of the extension, when given, is true or false; any other value is refused."""
    value = parameters.get(name) if parameters else None
    if value is not None and type(value) is not bool:
        raise ProtocolError(f"{where}{name}: {value!r} is not true or false")


def _check_shape(tensor: RequestInput) -> None:
    n, width = tensor.shape
    if width != len(FEATURES) or not 1 <= n <= MAX_BATCH_FLOWERS:
        raise ProtocolError(
            f"inputs[0].shape: {tensor.shape} is not [N, {len(FEATURES)}] with 1 <= N <= {MAX_BATCH_FLOWERS} "
            f"(N flowers, {len(FEATURES)} measurements each: {', '.join(FEATURES)})"
        )


def _rows(data: Sequence[Any], tensor: RequestInput, where: str) -> np.ndarray:
    """The flat values as (N, 4) float64 cm, held to Measurement's rules as the client's datatype holds them."""
    n, width = tensor.shape
    if len(data) != n * width:
        raise ProtocolError(f"{where}: {len(data)} values do not match shape {tensor.shape} ({n * width} values)")
    values = _measurements(data, where)
    if tensor.datatype == "FP32":  # JSON numbers are read as float64; an FP32 tensor holds them rounded
        with np.errstate(over="ignore"):  # an FP32 overflow becomes inf, refused below as not finite
            values = values.astype(np.float32).astype(np.float64)
        _measurements(values.tolist(), where, rounded=" after rounding to FP32")
    return values.reshape(n, width)


def _measurements(values: Sequence[Any], where: str, rounded: str = "") -> np.ndarray:
    try:
        return np.array(MEASUREMENTS.validate_python(values), dtype=np.float64)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False)[:3]:
            index = problem["loc"][0]
            row, column = divmod(index, len(FEATURES))
            problems.append(
                f"{where} value {index} (row {row}, {FEATURES[column]}){rounded}: {problem['msg']}"
                f" (got {problem['input']!r})"
            )
        more = error.error_count() - len(problems)
        raise ProtocolError("; ".join(problems) + (f"; and {more} more" if more > 0 else "")) from None


def asked_outputs(request: InferenceRequest) -> list[tuple[str, bool]]:
    """The outputs to answer, in the order asked (all of them when none is), each with whether the request asks
    for it in binary (HTTP's extension; over gRPC the contents follow the request's own form)."""
    every_output_binary = bool(request.parameters and request.parameters.get("binary_data_output"))
    asked = [(o.name, (o.parameters or {}).get("binary_data", every_output_binary)) for o in request.outputs or ()]
    return asked or [(name, every_output_binary) for name in OUTPUT_NAMES]


@dataclass(frozen=True)
class Answer:
    """A response body; `json_length` is the length of its JSON part when binary outputs follow it, else None."""

    body: bytes
    json_length: int | None = None


def infer_response(request: InferenceRequest, probabilities: np.ndarray, species: list[str], *, version: str) -> Answer:
    """The $inference_response, with the outputs asked for, in the order asked, each in JSON or in binary."""
    n = len(probabilities)
    outputs: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for name, in_binary in asked_outputs(request):
        if name == PROBABILITIES:
            values: Any = np.ascontiguousarray(probabilities, dtype="<f8")
            output: dict[str, Any] = {"name": name, "shape": [n, len(SPECIES)], "datatype": "FP64"}
        else:
            values = species
            output = {"name": SPECIES_OUTPUT, "shape": [n], "datatype": "BYTES"}
        if in_binary:
            raw = values.tobytes() if name == PROBABILITIES else b"".join(map(SPECIES_BYTES.__getitem__, values))
            output["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            output["data"] = values.ravel() if name == PROBABILITIES else values
        outputs.append(output)
    response: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return Answer(head)
    return Answer(b"".join([head, *binary]), len(head))
