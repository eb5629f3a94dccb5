"""The JSON objects of the Open Inference Protocol as pydantic models: they validate requests and document them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_BATCH_FLOWERS, MODEL_NAME, SPECIES, Measurement

INPUT_NAME = "measurements_cm"
PROBABILITIES, SPECIES_OUTPUT = "probabilities", "species"
OUTPUT_NAMES: tuple[str, ...] = (PROBABILITIES, SPECIES_OUTPUT)
SERVER_NAME = "bentoml"

# Measurement's own rules (type, finite, > 0, <= MAX_MEASUREMENT_CM) over a whole tensor's values.
MEASUREMENTS = TypeAdapter(list[Measurement])

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
                f"or nested (N rows of {len(FEATURES)}); each in cm, columns {', '.join(FEATURES)}; absent "
                "when the tensor is sent as binary tensor data"
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
    parameters: Parameters = Field(
        default=None,
        description="`binary_data_size`: the tensor's bytes follow the JSON part of the body (Triton's binary "
        "tensor data extension; the body then carries the Inference-Header-Content-Length header)",
    )
    data: TensorData = Field(default=None)  # absent when the tensor is sent in binary after the JSON part


class RequestOutput(BaseModel):
    """An output the client wants back ($request_output)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["probabilities", "species"]
    parameters: Parameters = Field(
        default=None, description="`binary_data`: true to get this output in binary after the JSON part"
    )


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
    parameters: Parameters = Field(
        default=None, description="`binary_data_output`: true to get every output not asking otherwise in binary"
    )
    inputs: list[RequestInput] = Field(min_length=1, max_length=1, description=f"exactly one: {INPUT_NAME}")
    outputs: list[RequestOutput] = Field(default=None, description="the outputs to return; all if absent")


class ResponseOutput(BaseModel):
    """An output tensor ($response_output)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | Absent = Field(
        default=None, description="`binary_data_size`: the output's bytes follow the JSON part instead of `data`"
    )
    data: list[float | str] | Absent = Field(default=None, description="row-major, flat")


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


# Server live/ready: the status is the answer (200 true, 4xx false), and the body says it again as KServe's
# SDK reads it; model ready answers with the status alone (an empty body).
class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool
