"""The Open Inference Protocol package on its own: decoding, the measurement rules, answers and error bodies."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_MEASUREMENT_CM, SPECIES, Measurement
from iris_classifier.serving.v2.codec import infer_response, parse_infer_request
from iris_classifier.serving.v2.errors import ProtocolError
from iris_classifier.serving.v2.routes import ErrorBodies, check_model
from iris_classifier.serving.v2.types import INPUT_NAME, InferenceRequest, InferenceResponse

ROWS = [[EXAMPLE_FLOWERS[species][name] for name in FEATURES] for species in SPECIES]


def body(data, *, shape=(3, 4), datatype="FP64", **extra) -> bytes:
    tensor = {"name": INPUT_NAME, "shape": list(shape), "datatype": datatype, "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def test_flat_and_nested_data_give_the_same_rows():
    _, nested = parse_infer_request(body(ROWS))
    _, flat = parse_infer_request(body([value for row in ROWS for value in row]))
    assert nested.dtype == np.float64 and nested.shape == (3, 4)
    assert nested.tolist() == flat.tolist() == ROWS


def test_fp32_values_are_the_float32_the_client_holds():
    _, rows = parse_infer_request(body(ROWS, datatype="FP32"))
    assert rows.tolist() == np.array(ROWS, dtype=np.float32).astype(np.float64).tolist()
    assert rows[0, 0] == 5.099999904632568


def test_the_documented_example_is_a_valid_request():
    example = InferenceRequest.model_json_schema()["example"]
    request, rows = parse_infer_request(orjson.dumps(example))
    assert request.id == "42" and rows.tolist() == ROWS


def test_response_has_the_outputs_asked_for_in_order_with_the_id():
    request, _ = parse_infer_request(body(ROWS, id="7", outputs=[{"name": "species"}, {"name": "probabilities"}]))
    probabilities = np.eye(3)
    answer = orjson.loads(infer_response(request, probabilities, list(SPECIES), version="v1").body)
    assert answer == {
        "model_name": "iris_classifier",
        "model_version": "v1",
        "id": "7",
        "outputs": [
            {"name": "species", "shape": [3], "datatype": "BYTES", "data": list(SPECIES)},
            {"name": "probabilities", "shape": [3, 3], "datatype": "FP64", "data": probabilities.ravel().tolist()},
        ],
    }
    InferenceResponse.model_validate(answer)  # matches what /docs.json documents


def test_check_model_refuses_other_models_and_versions_with_404():
    check_model("iris_classifier", None, served_version="v1")
    check_model("iris_classifier", "v1", served_version="v1")
    for name, version in (("resnet", None), ("iris_classifier", "v2")):
        with pytest.raises(ProtocolError) as refused:
            check_model(name, version, served_version="v1")
        assert refused.value.status == 404


# Any JSON value where a measurement goes: accepted exactly when the schema's Measurement accepts it
# (the V2 door has no rule of its own), and otherwise a 400 naming the value's row and feature.
json_scalars = (
    st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.none()
    | st.text(max_size=4)
    | st.lists(st.floats(min_value=1, max_value=2), max_size=2)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_scalars, min_size=4, max_size=4), st.sampled_from(["FP64", "FP32"]))
def test_a_measurement_passes_exactly_when_the_schema_accepts_it(values, datatype):
    def schema_accepts(value) -> bool:
        try:
            TypeAdapter(Measurement).validate_python(value)
        except ValidationError:
            return False
        if datatype == "FP32":  # what the model sees is the float32 value
            with np.errstate(over="ignore"):
                rounded = float(np.float32(value))
            return math.isfinite(rounded) and 0 < rounded <= MAX_MEASUREMENT_CM
        return True

    try:
        _, rows = parse_infer_request(body(values, shape=(1, 4), datatype=datatype))
    except ProtocolError as refused:
        assert refused.status == 400
        assert not all(map(schema_accepts, values))
        named = [name for name in FEATURES if f"{name})" in refused.message]
        assert named or (isinstance(values[0], list) and "nested data must be 1 rows of 4 numbers" in refused.message)
        return
    assert all(map(schema_accepts, values))
    assert rows.shape == (1, 4) and np.isfinite(rows).all()


def test_error_bodies_turn_framework_errors_into_the_spec_form():
    app = FastAPI()

    @app.get("/v2/needs_an_int")
    def needs_an_int(count: int) -> dict:
        return {"count": count}

    @app.get("/other")
    def other(count: int) -> dict:
        return {"count": count}

    client = TestClient(ErrorBodies(app))
    refused = client.get("/v2/needs_an_int", params={"count": "many"})
    assert refused.status_code == 400  # FastAPI's 422 is the spec's 400
    assert refused.json() == {"error": "GET /v2/needs_an_int: query.count: Input should be a valid integer, "
                                       "unable to parse string as an integer (got 'many')"}  # fmt: skip
    assert client.get("/v2/needs_an_int", params={"count": 3}).json() == {"count": 3}
    assert client.get("/v2/nothing").json() == {"error": "GET /v2/nothing: Not Found"}
    assert client.get("/other", params={"count": "many"}).status_code == 422  # outside /v2: untouched


# ---- Triton's binary tensor data extension, and the JSON fast path ----


def binary(rows, datatype="FP64", **extra) -> tuple[bytes, dict[str, str]]:
    raw = np.asarray(rows, dtype="<f8" if datatype == "FP64" else "<f4").tobytes()
    tensor = {"name": INPUT_NAME, "shape": list(np.shape(rows)), "datatype": datatype}
    head = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}], **extra})
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_binary_tensor_gives_the_rows_its_json_twin_gives(datatype):
    _, from_json = parse_infer_request(body(ROWS, datatype=datatype))
    _, from_binary = parse_infer_request(*binary(ROWS, datatype))
    assert from_binary.dtype == np.float64 and from_binary.tolist() == from_json.tolist()


def test_binary_header_is_read_whatever_its_case():
    payload, headers = binary(ROWS)
    (length,) = headers.values()
    for name in ("inference-header-content-length", "INFERENCE-HEADER-CONTENT-LENGTH"):
        assert parse_infer_request(payload, {name: length})[1].tolist() == ROWS


def test_binary_outputs_follow_the_json_part_in_the_order_asked():
    asked = [{"name": "species", "parameters": {"binary_data": True}}, {"name": "probabilities"}]
    request, _ = parse_infer_request(body(ROWS, id="b", outputs=asked))
    probabilities = np.eye(3)
    answer = infer_response(request, probabilities, list(SPECIES), version="v1")
    head = orjson.loads(answer.body[: answer.json_length])
    species, chances = head["outputs"]
    raw = answer.body[answer.json_length :]
    assert species == {"name": "species", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": 37}}
    assert raw == b"".join(len(name).to_bytes(4, "little") + name.encode() for name in SPECIES)
    assert chances["data"] == probabilities.ravel().tolist()  # not asked in binary: JSON
    InferenceResponse.model_validate(head)  # matches what /docs.json documents
    # binary_data_output: every output not saying otherwise
    request, _ = parse_infer_request(body(ROWS, parameters={"binary_data_output": True}))
    answer = infer_response(request, probabilities, list(SPECIES), version="v1")
    assert np.frombuffer(answer.body[answer.json_length :][:72], dtype="<f8").tolist() == probabilities.ravel().tolist()
    # no binary output asked: plain JSON, no JSON length
    request, _ = parse_infer_request(body(ROWS))
    assert infer_response(request, probabilities, list(SPECIES), version="v1").json_length is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(json_scalars, min_size=8, max_size=8),
    st.sampled_from(["FP64", "FP32"]),
    st.booleans(),
)
def test_the_json_fast_path_accepts_and_refuses_exactly_as_pydantic_does(values, datatype, nested):
    """The orjson + numpy path decides alone only when sure; the answer is the one the pydantic path gives."""
    from iris_classifier.serving.v2 import codec

    data = [values[:4], values[4:]] if nested else values
    payload = body(data, shape=(2, 4), datatype=datatype)

    def outcome():
        try:
            return parse_infer_request(payload)[1].tolist()
        except ProtocolError as refused:
            return refused.message

    fast = outcome()
    original = codec.JSONDecoder._fast_request
    codec.JSONDecoder._fast_request = lambda self: None
    try:
        slow = outcome()
    finally:
        codec.JSONDecoder._fast_request = original
    assert fast == slow
