"""The Open Inference Protocol (KServe V2) of a real `bentoml serve`: a third-party client, every refusal, parity."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_BATCH_FLOWERS, MAX_MEASUREMENT_CM, SPECIES
from iris_classifier.serving.v2.types import INPUT_NAME
from tests.service.conftest import classify_batch

MODEL = "iris_classifier"
ROWS = np.array([[EXAMPLE_FLOWERS[species][name] for name in FEATURES] for species in SPECIES])


@pytest.fixture(scope="module")
def version(url) -> str:
    return requests.get(f"{url}/model", timeout=10).json()["tag"].split(":", 1)[1]


@pytest.fixture
def client(url):
    client = triton.InferenceServerClient(url.removeprefix("http://"), connection_timeout=10, network_timeout=30)
    yield client
    client.close()


def json_outputs(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def tensor(rows: np.ndarray, datatype: str = "FP64") -> triton.InferInput:
    tensor = triton.InferInput(INPUT_NAME, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows.astype(np.float32 if datatype == "FP32" else np.float64), binary_data=False)
    return tensor


# ---- tritonclient, unchanged, against the source service and the built Bento ----


def test_tritonclient_health_and_readiness(client, version):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, version)
    assert not client.is_model_ready(MODEL, "0" + version)
    assert not client.is_model_ready("resnet50")


def test_tritonclient_metadata(client, version):
    import bentoml

    assert client.get_server_metadata() == {
        "name": "bentoml",
        "version": bentoml.__version__,
        "extensions": ["binary_tensor_data"],
    }
    metadata = client.get_model_metadata(MODEL)
    assert metadata == client.get_model_metadata(MODEL, version)
    assert metadata["name"] == MODEL and metadata["versions"] == [version]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {
            "name": INPUT_NAME,
            "datatype": "FP64",
            "shape": [-1, 4],
            "parameters": {"columns": ",".join(FEATURES), "unit": "cm"},
        }
    ]
    probabilities, species = metadata["outputs"]
    assert probabilities == {
        "name": "probabilities",
        "datatype": "FP64",
        "shape": [-1, 3],
        "parameters": {"columns": "setosa,versicolor,virginica"},
    }
    assert species == {"name": "species", "datatype": "BYTES", "shape": [-1]}
    with pytest.raises(InferenceServerException, match="unknown model 'resnet50'") as refused:
        client.get_model_metadata("resnet50")
    assert refused.value.status() == "404"


@pytest.mark.parametrize("with_version", [False, True])
def test_tritonclient_infer_agrees_with_classify(client, url, version, with_version):
    result = client.infer(
        MODEL,
        [tensor(ROWS)],
        model_version=version if with_version else "",
        outputs=json_outputs("probabilities", "species"),
        request_id="fisher-1936",
    )
    response = result.get_response()
    assert response["id"] == "fisher-1936"
    assert response["model_name"] == MODEL and response["model_version"] == version
    assert [output["name"] for output in response["outputs"]] == ["probabilities", "species"]
    assert result.as_numpy("species").tolist() == list(SPECIES)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 3) and probabilities.dtype == np.float64
    for row, answer in zip(ROWS, probabilities.tolist(), strict=True):
        one = requests.post(f"{url}/classify", json=dict(zip(FEATURES, row.tolist(), strict=True)), timeout=10).json()
        assert answer == [one["probabilities"][name] for name in SPECIES]  # exactly: the same model call


def test_tritonclient_fp32_tensor_is_read_as_its_float32_values(client, url):
    result = client.infer(MODEL, [tensor(ROWS, "FP32")], outputs=json_outputs("probabilities", "species"))
    as_sent = ROWS.astype(np.float32).astype(np.float64)  # 5.1 as FP32 is 5.099999904632568 cm
    expected = classify_batch(url, as_sent)
    assert result.as_numpy("species").tolist() == [answer["species"] for answer in expected]
    assert result.as_numpy("probabilities").tolist() == [list(answer["probabilities"].values()) for answer in expected]


def test_tritonclient_only_the_outputs_asked_for(client):
    result = client.infer(MODEL, [tensor(ROWS)], outputs=json_outputs("species"))
    assert [output["name"] for output in result.get_response()["outputs"]] == ["species"]
    assert result.as_numpy("probabilities") is None


def test_tritonclient_defaults_send_and_get_binary_tensors(client):
    binary = triton.InferInput(INPUT_NAME, [3, 4], "FP64")
    binary.set_data_from_numpy(ROWS)  # tritonclient's default: binary tensor data
    result = client.infer(MODEL, [binary])  # no outputs listed: binary_data_output, every output in binary
    outputs = result.get_response()["outputs"]
    sizes = [output["parameters"]["binary_data_size"] for output in outputs]
    assert sizes == [3 * 3 * 8, sum(4 + len(name) for name in SPECIES)]  # FP64s; BYTES: a 4-byte length, then each
    assert [name.decode() for name in result.as_numpy("species")] == list(SPECIES)
    assert result.as_numpy("probabilities").shape == (3, 3)


def test_tritonclient_ten_thousand_flowers(client, url):
    rows = np.random.default_rng(7).uniform(0.1, 8.0, size=(MAX_BATCH_FLOWERS, 4)).round(2)
    result = client.infer(MODEL, [tensor(rows)], outputs=json_outputs("probabilities", "species"))
    expected = classify_batch(url, rows)
    assert result.as_numpy("species").tolist() == [answer["species"] for answer in expected]
    assert result.as_numpy("probabilities").tolist() == [list(answer["probabilities"].values()) for answer in expected]


# ---- the same metrics as /classify ----


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_v2_requests_count_in_the_prometheus_metrics(url):
    before = requests.get(f"{url}/metrics", timeout=5).text
    infer(url, {"inputs": [{"name": INPUT_NAME, "shape": [3, 4], "datatype": "FP64", "data": ROWS.tolist()}]})
    after = requests.get(f"{url}/metrics", timeout=5).text
    for species in SPECIES:
        name = f'iris_predictions_total{{species="{species}"}}'
        assert metric(after, name) - metric(before, name) == 1
    assert metric(after, "iris_model_call_seconds_count") - metric(before, "iris_model_call_seconds_count") == 1


# ---- every refusal: a 4xx with the spec's {"error": ...} naming the problem ----


def infer(url: str, body, *, path: str = f"/v2/models/{MODEL}/infer", **kwargs) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return requests.post(f"{url}{path}", data=data, headers=headers, timeout=30, **kwargs)


GOOD_INPUT = {"name": INPUT_NAME, "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}


def request_with(**changes) -> dict:
    return {"inputs": [{**GOOD_INPUT, **changes}]}


BAD_REQUESTS = {
    "wrong shape": (request_with(shape=[1, 3], data=[5.1, 3.5, 1.4]), 400, "inputs[0].shape: [1, 3] is not [N, 4]"),
    "three dimensions": (request_with(shape=[1, 1, 4]), 400, "inputs[0].shape: List should have at most 2 items"),
    "no flowers": (request_with(shape=[0, 4], data=[]), 400, "with 1 <= N <= 10000"),
    "too many flowers": (
        request_with(shape=[MAX_BATCH_FLOWERS + 1, 4], data=[1.0] * 4 * (MAX_BATCH_FLOWERS + 1)),
        400,
        "[10001, 4] is not [N, 4] with 1 <= N <= 10000",
    ),
    "negative dimension": (request_with(shape=[-1, 4]), 400, "inputs[0].shape[0]: Input should be greater than"),
    "wrong datatype": (request_with(datatype="INT64", data=[5, 3, 1, 1]), 400, "inputs[0].datatype: Input should be"),
    "bytes datatype": (request_with(datatype="BYTES"), 400, "'FP64' or 'FP32' (got 'BYTES')"),
    "unknown input": (request_with(name="input-0"), 400, "inputs[0].name: Input should be 'measurements_cm'"),
    "two inputs": ({"inputs": [GOOD_INPUT, GOOD_INPUT]}, 400, "inputs: List should have at most 1 item"),
    "no input": ({"inputs": []}, 400, "inputs: List should have at least 1 item"),
    "unknown output": (
        {**request_with(), "outputs": [{"name": "logits"}]},
        400,
        "outputs[0].name: Input should be 'probabilities' or 'species' (got 'logits')",
    ),
    "output twice": (
        {**request_with(), "outputs": [{"name": "species"}, {"name": "species"}]},
        400,
        "output 'species' is requested twice",
    ),
    "too few values": (
        request_with(shape=[2, 4]),
        400,
        "inputs[0].data: 4 values do not match shape [2, 4] (8 values)",
    ),
    "too many values": (request_with(data=[5.1, 3.5, 1.4, 0.2, 1.0]), 400, "5 values do not match shape [1, 4]"),
    "ragged rows": (
        request_with(shape=[2, 4], data=[[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4]]),
        400,
        "nested data must be 2 rows of 4 numbers",
    ),
    "string value": (
        request_with(data=[5.1, "3.5", 1.4, 0.2]),
        400,
        "value 1 (row 0, sepal_width): Input should be a valid number (got '3.5')",
    ),
    "boolean value": (request_with(data=[5.1, 3.5, True, 0.2]), 400, "value 2 (row 0, petal_length)"),
    "null value": (request_with(data=[5.1, 3.5, 1.4, None]), 400, "value 3 (row 0, petal_width)"),
    "zero": (request_with(data=[5.1, 3.5, 1.4, 0]), 400, "petal_width): Input should be greater than 0"),
    "negative": (request_with(data=[-5.1, 3.5, 1.4, 0.2]), 400, "sepal_length): Input should be greater than 0"),
    "too large": (
        request_with(data=[5.1, MAX_MEASUREMENT_CM + 1, 1.4, 0.2]),
        400,
        "sepal_width): Input should be less than or equal to 50",
    ),
    "infinity": (
        b'{"inputs": [{"name": "measurements_cm", "shape": [1, 4], "datatype": "FP64", "data": [1e999, 1, 1, 1]}]}',
        400,
        "sepal_length): Input should be a finite number",
    ),
    "NaN": (
        b'{"inputs": [{"name": "measurements_cm", "shape": [1, 4], "datatype": "FP64", "data": [NaN, 1, 1, 1]}]}',
        400,
        "sepal_length): Input should be a finite number (got nan)",
    ),
    "FP32 underflow": (
        request_with(datatype="FP32", data=[1e-50, 3.5, 1.4, 0.2]),
        400,
        "sepal_length) after rounding to FP32: Input should be greater than 0",
    ),
    "FP32 overflow": (
        request_with(datatype="FP32", data=[5.1, 3.5, 1.4, 1e39]),
        400,
        "petal_width): Input should be less than or equal to 50",
    ),
    "binary input without its header": (
        {"inputs": [{**GOOD_INPUT, "parameters": {"binary_data_size": 32}}]},
        400,
        "inputs[0].parameters.binary_data_size: binary tensor data needs the Inference-Header-Content-Length header",
    ),
    "no data": (
        {"inputs": [{key: value for key, value in GOOD_INPUT.items() if key != "data"}]},
        400,
        "inputs[0].data: the tensor's values are missing",
    ),
    "binary output flag not a boolean": (
        {**request_with(), "outputs": [{"name": "species", "parameters": {"binary_data": "yes"}}]},
        400,
        "outputs[0].parameters.binary_data: 'yes' is not true or false",
    ),
    "binary outputs flag not a boolean": (
        {**request_with(), "parameters": {"binary_data_output": 1}},
        400,
        "parameters.binary_data_output: 1 is not true or false",
    ),
    "classification extension": (
        {**request_with(), "outputs": [{"name": "species", "parameters": {"classification": 2}}]},
        400,
        "outputs[0].parameters.classification: the classification extension is not supported",
    ),
    "other model in the body": ({**request_with(), "model_name": "resnet50"}, 400, "model_name: the body names"),
    "unknown field": ({**request_with(), "priority": 1}, 400, "priority: Extra inputs are not permitted"),
    "id not a string": ({**request_with(), "id": 42}, 400, "id: Input should be a valid string (got 42)"),
    "malformed JSON": (b'{"inputs": [', 400, "Invalid JSON"),
    "empty body": (b"", 400, "Invalid JSON"),
    "not an object": (b"[1, 2, 3, 4]", 400, "body: Input should be an object"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_infer_request_is_refused_naming_the_problem(url, case):
    body, status, message = BAD_REQUESTS[case]
    response = infer(url, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/v2/models/resnet50/infer", 404, "unknown model 'resnet50': this server serves 'iris_classifier'"),
        ("POST", f"/v2/models/{MODEL}/versions/7/infer", 404, "unknown version '7' of model 'iris_classifier'"),
        ("GET", f"/v2/models/{MODEL}/versions/7", 404, "unknown version '7'"),
        ("GET", "/v2/models/resnet50/ready", 404, "unknown model 'resnet50'"),
        ("GET", "/v2/models/a%0Ab", 404, "GET /v2/models/a\nb: Not Found"),  # never reaches a route
        ("GET", "/v2/repository/index", 404, "GET /v2/repository/index: Not Found"),  # an extension not served
        ("GET", f"/v2/models/{MODEL}/infer", 405, "Method Not Allowed"),
        ("POST", "/v2/health/live", 405, "POST /v2/health/live: Method Not Allowed"),
    ],
)
def test_unknown_model_version_path_or_method_is_refused_in_the_spec_form(url, method, path, status, message):
    response = requests.request(method, f"{url}{path}", json=request_with(), timeout=10)
    assert response.status_code == status
    assert response.json() == {"error": response.json()["error"]} and message in response.json()["error"]


def test_a_body_declared_as_octets_is_refused_by_the_request_guard(url):
    # serving/middleware.py's RequestGuard takes JSON (or no Content-Type) only; tritonclient sends none.
    octets = infer(url, orjson.dumps(request_with()), headers={"Content-Type": "application/octet-stream"})
    assert octets.status_code == 415 and "is not accepted" in octets.json()["error"]


def test_health_answers(url, version):
    # Server live/ready carry KServe's body too (its SDK reads it); model ready has the spec's empty body.
    assert requests.get(f"{url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}
    for path in (f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/{version}/ready"):
        response = requests.get(f"{url}{path}", timeout=5)
        assert (response.status_code, response.content) == (200, b""), path


def test_outputs_in_the_order_asked_and_no_id_when_none_sent(url, version):
    response = infer(url, {**request_with(), "outputs": [{"name": "species"}, {"name": "probabilities"}]})
    assert response.status_code == 200
    assert response.json() == {
        "model_name": MODEL,
        "model_version": version,
        "outputs": [
            {"name": "species", "shape": [1], "datatype": "BYTES", "data": ["setosa"]},
            {"name": "probabilities", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 0.0, 0.0]},
        ],
    }


def test_docs_json_documents_the_v2_paths_with_examples(url):
    spec = requests.get(f"{url}/docs.json", timeout=5).json()
    paths = {path: set(operations) for path, operations in spec["paths"].items() if path.startswith("/v2")}
    assert paths == {
        "/v2": {"get"},
        "/v2/health/live": {"get"},
        "/v2/health/ready": {"get"},
        "/v2/models/{model_name}": {"get"},
        "/v2/models/{model_name}/ready": {"get"},
        "/v2/models/{model_name}/versions/{model_version}": {"get"},
        "/v2/models/{model_name}/versions/{model_version}/ready": {"get"},
        "/v2/models/{model_name}/infer": {"post"},
        "/v2/models/{model_name}/versions/{model_version}/infer": {"post"},
    }
    infer_operation = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
    body = infer_operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["example"]["inputs"][0]["data"] == ROWS.tolist()
    assert infer_operation["parameters"][0]["schema"]["enum"] == [MODEL]
    assert set(infer_operation["responses"]) == {"200", "400", "404", "4XX"}  # no 422: refusals are the spec's 400
    assert spec["components"]["schemas"]["InferenceResponse"]["example"]["outputs"][1]["data"] == ["setosa"]
    # The documented request validates: the example is a working request.
    response = infer(url, body["example"])
    assert response.status_code == 200
    assert response.json()["outputs"][1]["data"] == list(SPECIES)


# ---- property: V2 answers equal /classify_batch's, for any batch of valid flowers ----

measurement = st.floats(min_value=0.0, max_value=MAX_MEASUREMENT_CM, exclude_min=True, allow_nan=False)
batches = st.lists(st.lists(measurement, min_size=4, max_size=4), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    rows=batches,
    form=st.sampled_from(["flat", "nested", "binary", "binary in, JSON out", "JSON in, binary out"]),
    with_version=st.booleans(),
)
def test_v2_answers_equal_classify_batch(server, rows, form, with_version):
    """Whatever the body's form (JSON flat or nested, Triton's binary tensors in or out), the same answers."""
    from tests.service.test_v2_binary import binary_body, read_answer

    url = server.url
    version = requests.get(f"{url}/model", timeout=10).json()["tag"].split(":", 1)[1]
    path = f"/v2/models/{MODEL}/versions/{version}/infer" if with_version else f"/v2/models/{MODEL}/infer"
    if form.startswith("binary"):
        body, headers = binary_body(np.array(rows), outputs=None if form == "binary" else {"species": False})
        response = requests.post(f"{url}{path}", data=body, headers=headers, timeout=30)
        if form != "binary":  # only the species, in JSON
            assert response.status_code == 200, response.text
            assert read_answer(response)[1]["species"] == [a["species"] for a in classify_batch(url, np.array(rows))]
            return
    else:
        data = rows if form == "nested" else [value for row in rows for value in row]
        tensor = {"name": INPUT_NAME, "shape": [len(rows), 4], "datatype": "FP64", "data": data}
        document = {"inputs": [tensor]}
        if form == "JSON in, binary out":
            document["parameters"] = {"binary_data_output": True}
        response = infer(url, document, path=path)
    assert response.status_code == 200, response.text
    document, values = read_answer(response)
    expected = classify_batch(url, np.array(rows))
    assert values["species"] == [answer["species"] for answer in expected]
    assert document["outputs"][0]["shape"] == [len(rows), 3]
    assert values["probabilities"] == [p for answer in expected for p in answer["probabilities"].values()]
