"""The Open Inference Protocol's semantics over one served model, whatever the transport: health, metadata, and
inference (decode, validate, predict) from a `RequestDecoder` of the transport's wire form.

The REST routes (routes.py) and the gRPC server (grpc_server.py) call this and only translate their wire format
and their error codes (a ProtocolError's HTTP status; grpc_server maps it to a gRPC status code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from iris_classifier.domain.schema import FEATURES, MODEL_NAME, SPECIES
from iris_classifier.serving.v2.codec import BINARY_EXTENSION, RequestDecoder, decode
from iris_classifier.serving.v2.errors import ProtocolError
from iris_classifier.serving.v2.types import (
    INPUT_NAME,
    PROBABILITIES,
    SERVER_NAME,
    SPECIES_OUTPUT,
    InferenceRequest,
    MetadataTensor,
    ModelMetadata,
    ServerMetadata,
)

# Rows of cm and the request's id -> (probabilities in SPECIES order, the most probable species per row): the
# service's model call, which counts and logs the flowers under that id.
Predict = Callable[[np.ndarray, str], tuple[np.ndarray, list[str]]]


def server_metadata(extensions: tuple[str, ...] = (BINARY_EXTENSION,)) -> dict[str, Any]:
    """The server's name, version and protocol extensions (REST's binary tensor data by default)."""
    import bentoml

    return ServerMetadata(name=SERVER_NAME, version=bentoml.__version__, extensions=list(extensions)).model_dump()


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


@dataclass(frozen=True)
class Inference:
    """One answered inference: the request as the protocol read it, and the model's answer for its rows."""

    request: InferenceRequest
    probabilities: np.ndarray  # (N, 3) in SPECIES order
    species: list[str]


@dataclass
class DataPlane:
    """The protocol over one served model: its version, its backend, its readiness and its model call."""

    version: str
    backend: str
    predict: Predict
    is_ready: Callable[[], bool]

    def metadata(self, model_name: str, model_version: str | None = None) -> dict[str, Any]:
        check_model(model_name, model_version, served_version=self.version)
        return model_metadata(version=self.version, backend=self.backend)

    def model_is_ready(self, model_name: str, model_version: str | None = None) -> bool:
        check_model(model_name, model_version, served_version=self.version)
        return self.is_ready()

    def run(self, decoder: RequestDecoder, request_id: str) -> Inference:
        """Decode and validate the request (a ProtocolError names what breaks a rule), then classify its rows,
        counted and logged under `request_id`."""
        request, rows = decode(decoder)
        probabilities, species = self.predict(rows, request_id)
        return Inference(request, probabilities, species)
