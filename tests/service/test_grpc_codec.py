"""The gRPC transport reads a request as the REST one does (one protocol, two wire forms), and its committed stubs
are what the .proto generates."""

from __future__ import annotations

import numpy as np
import pytest

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.serving.v2.codec import decode, decoder_for
from iris_classifier.serving.v2.errors import ProtocolError
from iris_classifier.serving.v2.grpc_codec import GrpcDecoder
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2 as pb
from iris_classifier.serving.v2.types import INPUT_NAME
from ops import grpc_stubs

ROWS = np.array([[EXAMPLE_FLOWERS[species][name] for name in FEATURES] for species in SPECIES])


def both_forms(rows: list, shape: list[int], datatype: str = "FP64") -> tuple[bytes, pb.ModelInferRequest]:
    """One request as a REST JSON body and as a typed gRPC message."""
    import orjson

    body = orjson.dumps({"inputs": [{"name": INPUT_NAME, "shape": shape, "datatype": datatype, "data": rows}]})
    field = "fp64_contents" if datatype == "FP64" else "fp32_contents"
    message = pb.ModelInferRequest(
        inputs=[{"name": INPUT_NAME, "datatype": datatype, "shape": shape, "contents": {field: rows}}]
    )
    return body, message


def refusal(decoder) -> str:
    with pytest.raises(ProtocolError) as refused:
        decode(decoder)
    return refused.value.message


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_the_same_rows_from_either_transport(datatype):
    rows = np.random.default_rng(0).uniform(0.1, 9.0, size=(500, 4))
    if datatype == "FP32":
        rows = rows.astype(np.float32).astype(np.float64)
    body, message = both_forms(rows.ravel().tolist(), [500, 4], datatype)
    _, from_rest = decode(decoder_for(body, None))
    _, from_grpc = decode(GrpcDecoder(message))
    raw = pb.ModelInferRequest(inputs=[{"name": INPUT_NAME, "datatype": datatype, "shape": [500, 4]}])
    raw.raw_input_contents.append(rows.astype("<f8" if datatype == "FP64" else "<f4").tobytes())
    _, from_raw = decode(GrpcDecoder(raw))
    assert from_rest.tobytes() == from_grpc.tobytes() == from_raw.tobytes() == rows.tobytes()


@pytest.mark.parametrize(
    ("values", "shape", "datatype"),
    [
        ([5.1, 0.0, 1.4, 0.2], [1, 4], "FP64"),  # zero (JSON carries no NaN: test_grpc.py sends that one)
        ([5.1, 3.5, -1.4, 0.2], [1, 4], "FP64"),  # not > 0
        ([5.1, 3.5, 1.4, 400.0], [1, 4], "FP64"),  # over the largest measurement
        ([5.1, 3.5, 1.4, 0.2, 1.0], [1, 4], "FP64"),  # count and shape disagree
        ([5.1, 3.5, 1.4, 0.2], [1, 3], "FP64"),  # not [N, 4]
        ([5.1, 3.5, 1.4, 0.2], [0, 4], "FP64"),  # no flower
        ([5.1, 3.5, 1.4, 1e300], [1, 4], "FP32"),  # overflows FP32
    ],
)
def test_the_same_refusal_from_either_transport_but_for_where_the_values_are(values, shape, datatype):
    body, message = both_forms(values, shape, datatype)
    field = "fp64_contents" if datatype == "FP64" else "fp32_contents"
    from_rest = refusal(decoder_for(body, None))
    if datatype == "FP32" and values[-1] > 1e38:  # protobuf's float field rounds it to inf before the server sees it
        assert "(got inf)" in refusal(GrpcDecoder(message))
        return
    assert refusal(GrpcDecoder(message)) == from_rest.replace("inputs[0].data", f"inputs[0].contents.{field}")


def test_fields_the_protocol_refuses_are_named_as_over_rest():
    message = pb.ModelInferRequest(
        inputs=[{"name": "x", "datatype": "INT32", "shape": [1, 4], "contents": {"int_contents": [1, 2, 3, 4]}}],
        outputs=[{"name": "probabilities"}, {"name": "probabilities"}],
    )
    assert refusal(GrpcDecoder(message)).split("; ") == [
        "inputs[0].name: Input should be 'measurements_cm' (got 'x')",
        "inputs[0].datatype: Input should be 'FP64' or 'FP32' (got 'INT32')",
    ]
    message.inputs[0].name, message.inputs[0].datatype = INPUT_NAME, "FP64"
    assert refusal(GrpcDecoder(message)) == "outputs[1].name: output 'probabilities' is requested twice"
    del message.outputs[1]
    assert refusal(GrpcDecoder(message)) == (
        "inputs[0].contents.int_contents: a FP64 tensor's values go in contents.fp64_contents"
    )


def test_our_stubs_and_tritonclients_import_in_one_process():
    import tritonclient.grpc.service_pb2 as triton  # the same `inference.*` names, in protobuf's default pool

    assert triton.ModelInferRequest.DESCRIPTOR.full_name == pb.ModelInferRequest.DESCRIPTOR.full_name
    wire = pb.ModelInferRequest(model_name="iris_classifier", inputs=[{"name": INPUT_NAME, "shape": [1, 4]}])
    assert triton.ModelInferRequest.FromString(wire.SerializeToString()).inputs[0].shape == [1, 4]


def test_the_committed_stubs_are_what_the_proto_generates(tmp_path):
    folder = grpc_stubs.ROOT / grpc_stubs.PROTO.parent
    for name, text in grpc_stubs.generate(tmp_path).items():
        assert (folder / name).read_text() == text, f"{name} is stale: run `make grpc-stubs`"
