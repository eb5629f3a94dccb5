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
    answer = orjson.loads(infer_response(request, probabilities, list(SPECIES), version="v1"))
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
