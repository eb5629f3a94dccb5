"""The running image (make run-image) serves the Open Inference Protocol over gRPC beside HTTP."""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.serving.v2.types import INPUT_NAME
from tests.container.conftest import URL

pytestmark = pytest.mark.container

TARGET = os.environ.get("IRIS_CONTAINER_GRPC", "127.0.0.1:3001")
ROWS = np.array([[EXAMPLE_FLOWERS[species][name] for name in FEATURES] for species in SPECIES])


def test_the_image_serves_grpc_health_and_inference(container):
    with grpc.insecure_channel(TARGET) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=10
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING  # what the pod's readiness probe asks

    client = triton.InferenceServerClient(url=TARGET)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris_classifier")
    tensor = triton.InferInput(INPUT_NAME, list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer("iris_classifier", [tensor])
    assert [name.decode() for name in result.as_numpy("species")] == list(SPECIES)
    served = requests.get(f"{URL}/model", timeout=10).json()["tag"].split(":", 1)[1]
    assert result.get_response().model_version == served

    wrong = triton.InferInput(INPUT_NAME, [3, 3], "FP64")
    wrong._raw_content = ROWS.tobytes()  # past the client's own shape check
    with pytest.raises(InferenceServerException) as refused:
        client.infer("iris_classifier", [wrong])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert client.is_server_live()
    client.close()
