"""The Open Inference Protocol over gRPC of a real `bentoml serve`: tritonclient.grpc at its defaults, the generated
stubs with typed contents, every refusal's status code, size limits, health checking and reflection."""

from __future__ import annotations

import socket
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_BATCH_FLOWERS, MAX_MEASUREMENT_CM, SPECIES
from iris_classifier.harness.servers import Server
from iris_classifier.serving.v2.grpc_server import MAX_MESSAGE_BYTES, SERVICE_NAME
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2 as pb
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2_grpc as pb_grpc
from iris_classifier.serving.v2.types import INPUT_NAME
from tests.service.conftest import classify_batch

MODEL = "iris_classifier"
ROWS = np.array([[EXAMPLE_FLOWERS[species][name] for name in FEATURES] for species in SPECIES])


@pytest.fixture(scope="module")
def served(server) -> Server:
    """The source service (the built Bento serves gRPC the same: tests/service/test_bento.py)."""
    return server


@pytest.fixture(scope="module")
def version(served) -> str:
    return requests.get(f"{served.url}/model", timeout=10).json()["tag"].split(":", 1)[1]


@pytest.fixture
def client(served):
    client = triton.InferenceServerClient(url=served.grpc_target)  # its defaults: raw tensors, no TLS
    yield client
    client.close()


@pytest.fixture
def stub(served):
    with grpc.insecure_channel(served.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def random_flowers(count: int, seed: int = 0) -> np.ndarray:
    """Flowers inside and outside the training ranges, every one valid (0 < value <= MAX_MEASUREMENT_CM)."""
    return np.random.default_rng(seed).uniform(0.1, 9.0, size=(count, len(FEATURES)))


def triton_input(rows: np.ndarray, datatype: str = "FP64", shape: list[int] | None = None) -> triton.InferInput:
    tensor = triton.InferInput(INPUT_NAME, shape or list(rows.shape), datatype)
    if shape is None:
        tensor.set_data_from_numpy(rows.astype(np.float32 if datatype == "FP32" else np.float64))
    else:  # a shape that does not match the values: set the raw bytes past the client's own check
        tensor._raw_content = rows.astype(np.float64).tobytes()
    return tensor


def refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        call()
    return refused.value


# ---- tritonclient.grpc at its defaults ----


def test_tritonclient_health_readiness_and_metadata(client, version):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, version)
    server = client.get_server_metadata()
    assert server.name == "bentoml" and server.version
    metadata = client.get_model_metadata(MODEL, as_json=True)
    assert metadata["name"] == MODEL and metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": INPUT_NAME, "datatype": "FP64", "shape": ["-1", "4"]}]
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP64", "shape": ["-1", "3"]},
        {"name": "species", "datatype": "BYTES", "shape": ["-1"]},
    ]


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_tritonclient_infer_equals_classify_batch(served, client, datatype):
    rows = random_flowers(300, seed=1)
    if datatype == "FP32":
        rows = rows.astype(np.float32).astype(np.float64)  # what the server reads from FP32 bytes
    result = client.infer(MODEL, [triton_input(rows, datatype)], request_id="flowers-300")
    expected = classify_batch(served.url, rows)
    species = [name.decode() for name in result.as_numpy("species")]
    assert species == [answer["species"] for answer in expected]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (300, len(SPECIES))
    reference = np.array([[answer["probabilities"][name] for name in SPECIES] for answer in expected])
    np.testing.assert_allclose(probabilities, reference, rtol=0, atol=1e-6)
    response = result.get_response()
    assert response.id == "flowers-300" and response.model_name == MODEL


def test_tritonclient_refusals_carry_their_codes_and_the_server_keeps_serving(client, version):
    rows = random_flowers(300)
    wrong_width = refusal(lambda: client.infer(MODEL, [triton_input(rows, shape=[300, 3])]))
    assert wrong_width.status() == "StatusCode.INVALID_ARGUMENT"
    assert "inputs[0].shape: [300, 3] is not [N, 4]" in wrong_width.message()

    negative = refusal(lambda: client.infer(MODEL, [triton_input(rows, shape=[-1, 4])]))
    assert negative.status() == "StatusCode.INVALID_ARGUMENT"
    assert "inputs[0].shape[0]" in negative.message() and "greater than or equal to 0" in negative.message()

    unknown = refusal(lambda: client.infer("resnet50", [triton_input(rows)]))
    assert unknown.status() == "StatusCode.NOT_FOUND"
    assert "unknown model 'resnet50'" in unknown.message()

    old = refusal(lambda: client.infer(MODEL, [triton_input(rows)], model_version="0" + version))
    assert old.status() == "StatusCode.NOT_FOUND" and "unknown version" in old.message()

    assert refusal(lambda: client.is_model_ready("resnet50")).status() == "StatusCode.NOT_FOUND"
    assert client.is_server_live()
    assert client.infer(MODEL, [triton_input(ROWS)]).as_numpy("species").tolist() == [s.encode() for s in SPECIES]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (float("nan"), "finite number"),
        (float("inf"), "finite number"),
        (-1.0, "greater than 0"),
        (MAX_MEASUREMENT_CM * 2, f"less than or equal to {MAX_MEASUREMENT_CM:g}"),
    ],
)
def test_a_bad_measurement_is_named_by_row_and_feature(client, value, rule):
    rows = ROWS.copy()
    rows[2, 3] = value
    refused = refusal(lambda: client.infer(MODEL, [triton_input(rows)]))
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert "raw_input_contents[0] value 11 (row 2, petal_width)" in refused.message()
    assert rule in refused.message()


# ---- the generated stubs, typed contents ----


def typed_request(rows: np.ndarray, datatype: str = "FP64", **fields) -> pb.ModelInferRequest:
    contents = (
        pb.InferTensorContents(fp64_contents=rows.ravel().tolist())
        if datatype == "FP64"
        else pb.InferTensorContents(fp32_contents=rows.ravel().tolist())
    )
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=INPUT_NAME, datatype=datatype, shape=list(rows.shape), contents=contents
    )
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], **fields)


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_typed_contents_are_answered_in_typed_contents(served, stub, datatype):
    rows = random_flowers(50, seed=2)
    if datatype == "FP32":
        rows = rows.astype(np.float32).astype(np.float64)
    request = typed_request(rows, datatype, id="typed", outputs=[{"name": "species"}, {"name": "probabilities"}])
    response, call = stub.ModelInfer.with_call(request, timeout=10)
    assert [output.name for output in response.outputs] == ["species", "probabilities"]  # the order asked
    assert not response.raw_output_contents and response.id == "typed"
    species, probabilities = response.outputs
    assert list(species.shape) == [50] and species.datatype == "BYTES"
    assert list(probabilities.shape) == [50, 3] and probabilities.datatype == "FP64"
    expected = classify_batch(served.url, rows)
    assert [name.decode() for name in species.contents.bytes_contents] == [a["species"] for a in expected]
    reference = [answer["probabilities"][name] for answer in expected for name in SPECIES]
    np.testing.assert_allclose(list(probabilities.contents.fp64_contents), reference, rtol=0, atol=1e-6)
    request_id = dict(call.trailing_metadata())["x-request-id"]
    assert request_id.isdigit()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datatype": "INT32"}, "inputs[0].datatype: Input should be 'FP64' or 'FP32' (got 'INT32')"),
        ({"name": "x"}, "inputs[0].name: Input should be 'measurements_cm'"),
        ({"contents": pb.InferTensorContents()}, "inputs[0].contents.fp64_contents: the tensor's values are missing"),
        (
            {"contents": pb.InferTensorContents(fp32_contents=[1.0] * 12)},
            "inputs[0].contents.fp32_contents: a FP64 tensor's values go in contents.fp64_contents",
        ),
        (
            {"contents": pb.InferTensorContents(fp64_contents=[1.0] * 11)},
            "inputs[0].contents.fp64_contents: 11 values do not match shape [3, 4] (12 values)",
        ),
    ],
)
def test_typed_refusals_name_the_field_and_rule(stub, change, message):
    request = typed_request(ROWS)
    tensor = request.inputs[0]
    for field, value in change.items():
        if field == "contents":
            tensor.contents.CopyFrom(value)
        else:
            setattr(tensor, field, value)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()


def test_raw_and_typed_values_together_or_a_wrong_byte_count_are_refused(stub):
    both = typed_request(ROWS)
    both.raw_input_contents.append(ROWS.tobytes())
    short = pb.ModelInferRequest(model_name=MODEL, inputs=[{"name": INPUT_NAME, "datatype": "FP64", "shape": [3, 4]}])
    short.raw_input_contents.append(ROWS.tobytes()[:-8])
    for request, message in [
        (both, "inputs[0].contents and raw_input_contents: send the values once"),
        (short, "raw_input_contents[0]: 88 bytes do not match shape [3, 4] of FP64 (3 x 4 x 8 = 96 bytes)"),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == message


def test_an_oversized_message_is_refused_and_the_server_keeps_serving(stub):
    rows = random_flowers(MAX_BATCH_FLOWERS)
    request = typed_request(rows)
    request.id = "x" * (MAX_MESSAGE_BYTES - request.ByteSize() + 1)  # one byte over the limit
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    request.id = "largest"  # the largest batch fits
    assert len(stub.ModelInfer(request, timeout=30).outputs[1].contents.bytes_contents) == MAX_BATCH_FLOWERS
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_calls_are_counted_in_metrics(served, stub):
    stub.ModelInfer(typed_request(ROWS), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.ModelMetadata(pb.ModelMetadataRequest(name="resnet50"), timeout=10)
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    counted = {
        line.split("{", 1)[1].split("}", 1)[0]
        for line in metrics.splitlines()
        if line.startswith("iris_grpc_requests_total{")
    }
    assert 'code="OK",method="ModelInfer"' in counted
    assert 'code="NOT_FOUND",method="ModelMetadata"' in counted


# ---- health checking and reflection (what grpcurl and Kubernetes gRPC probes use) ----


def test_health_checking_and_reflection(served):
    with grpc.insecure_channel(served.grpc_target) as channel:
        checks = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = checks.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            checks.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        (listed,) = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for service in listed.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
        for symbol in (SERVICE_NAME, "inference.ModelInferRequest", "grpc.health.v1.Health"):
            (described,) = reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)])
            )
            (proto,) = described.file_descriptor_response.file_descriptor_proto  # what grpcurl describes from
            file = descriptor_pb2.FileDescriptorProto.FromString(proto)
            assert symbol.rsplit(".", 1)[-1] in {*(s.name for s in file.service), *(m.name for m in file.message_type)}


# ---- admission control: the same budget as REST ----


@pytest.fixture(scope="module")
def small_budget(pipeline_ready, artifacts_dir):
    """A server whose budget holds one 10,000-flower batch (and the small reserve) in flight."""
    server = Server(
        "service:IrisClassifier",
        env={"IRIS_ADMISSION_FLOWERS": str(MAX_BATCH_FLOWERS + 2_000)},
        log_path=artifacts_dir / "serve-grpc-admission.log",
    ).start()
    yield server
    server.stop()


def test_batches_over_the_budget_are_shed_with_resource_exhausted_and_retry_after(small_budget):
    request = typed_request(random_flowers(MAX_BATCH_FLOWERS, seed=3))
    with grpc.insecure_channel(small_budget.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        futures = [stub.ModelInfer.future(request, timeout=60) for _ in range(8)]  # sent at once, on one channel
        answered, shed = [], []
        for future in futures:
            try:
                answered.append(future.result())
            except grpc.RpcError as refused:
                shed.append(refused)
        assert answered and shed, "the first batch is admitted, and one sent while it is in flight is shed"
        for refused in shed:
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "overloaded, not processed (flowers_in_flight)" in refused.details()
            assert int(dict(refused.trailing_metadata())["retry-after"]) >= 1
        for response in answered:
            assert len(response.outputs[1].contents.bytes_contents) == MAX_BATCH_FLOWERS
        small = stub.ModelInfer(typed_request(ROWS), timeout=10)  # one-flower requests keep flowing
        assert list(small.outputs[1].contents.bytes_contents) == [name.encode() for name in SPECIES]


def test_a_grpc_port_in_use_stops_the_start_with_what_to_do(pipeline_ready, artifacts_dir):
    log = artifacts_dir / "serve-grpc-port-in-use.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Server("service:IrisClassifier", grpc_port=taken.getsockname()[1], log_path=log).start(wait_ready=0)
        try:
            deadline = time.monotonic() + 120
            while "Application startup failed" not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.5)
            text = log.read_text(errors="replace")
        finally:
            server.stop()
    assert "iris_classifier: gRPC cannot listen on 127.0.0.1:" in text
    assert "Choose another with IRIS_GRPC_PORT (make serve GRPC_PORT=...), or IRIS_GRPC_PORT=off" in text
    assert "Application startup failed" in text
