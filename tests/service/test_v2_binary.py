"""Triton's binary tensor data extension on a real `bentoml serve`: tritonclient with its defaults, a client that
builds the body by hand, and a corpus of malformed binary requests, each refused with a 4xx naming the problem."""

from __future__ import annotations

import socket
import struct
import time

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton

from iris_classifier.data.production_log import monitor_dir
from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS, SPECIES
from iris_classifier.serving.v2.types import INPUT_NAME

MODEL = "iris_classifier"
INFER = f"/v2/models/{MODEL}/infer"
HEADER = "Inference-Header-Content-Length"
DTYPES = {"FP64": "<f8", "FP32": "<f4"}


# ---- a client that knows nothing but the extension's text: bodies built and answers read by hand ----


def binary_body(
    rows: np.ndarray, datatype: str = "FP64", *, outputs: dict[str, bool] | None = None, **request
) -> tuple[bytes, dict[str, str]]:
    """The JSON part, then the tensor's little-endian bytes; and the header that says where the JSON ends.
    `outputs`: name -> binary_data for each output asked for; None asks for all, every one in binary."""
    raw = np.ascontiguousarray(rows, dtype=DTYPES[datatype]).tobytes()
    tensor = {"name": INPUT_NAME, "shape": list(rows.shape), "datatype": datatype}
    tensor["parameters"] = {"binary_data_size": len(raw)}
    document = {**request, "inputs": [tensor]}
    if outputs is None:
        document["parameters"] = {"binary_data_output": True}
    else:
        document["outputs"] = [{"name": name, "parameters": {"binary_data": flag}} for name, flag in outputs.items()]
    head = orjson.dumps(document)
    return head + raw, {HEADER: str(len(head))}


def read_answer(response: requests.Response) -> tuple[dict, dict[str, list]]:
    """The JSON part of an answer and each output's values: from `data`, or from the bytes after the JSON part
    (FP64 as 8-byte floats, BYTES as a 4-byte little-endian length then the bytes, per element)."""
    body = response.content
    length = int(response.headers.get(HEADER, len(body)))
    document = orjson.loads(body[:length])
    values, offset = {}, length
    for output in document["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values[output["name"]] = output["data"]
            continue
        chunk, offset = body[offset : offset + size], offset + size
        if output["datatype"] == "FP64":
            values[output["name"]] = np.frombuffer(chunk, dtype="<f8").tolist()
        else:
            names, at = [], 0
            while at < len(chunk):
                (count,) = struct.unpack_from("<I", chunk, at)
                names.append(chunk[at + 4 : at + 4 + count].decode())
                at += 4 + count
            values[output["name"]] = names
    assert offset == len(body), "bytes left over after the last binary output"
    return document, values


def post(url: str, body: bytes, headers: dict[str, str], path: str = INFER) -> requests.Response:
    return requests.post(f"{url}{path}", data=body, headers=headers, timeout=30)


def random_flowers(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 8.0, size=(count, len(FEATURES)))


def classify_each(url: str, rows: np.ndarray) -> list[dict]:
    with requests.Session() as session:
        return [
            session.post(f"{url}/classify", json=dict(zip(FEATURES, row, strict=True)), timeout=10).json()
            for row in rows.tolist()
        ]


def assert_agrees_with_classify(species: list[str], probabilities: np.ndarray, expected: list[dict]) -> None:
    assert species == [answer["species"] for answer in expected]
    wanted = np.array([[answer["probabilities"][name] for name in SPECIES] for answer in expected])
    assert probabilities.shape == wanted.shape
    np.testing.assert_allclose(probabilities, wanted, rtol=0, atol=1e-6)


# ---- tritonclient, unchanged and with its defaults: binary in and out ----


@pytest.fixture
def client(url):
    client = triton.InferenceServerClient(url.removeprefix("http://"), connection_timeout=10, network_timeout=30)
    yield client
    client.close()


def test_tritonclient_with_its_defaults_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.get_model_metadata(MODEL)["inputs"][0]["name"] == INPUT_NAME


@pytest.mark.parametrize(
    ("binary_in", "binary_out"),
    [(True, True), (False, False), (True, False), (False, True)],
    ids=["defaults (binary in and out)", "binary_data=False", "binary in, JSON out", "JSON in, binary out"],
)
def test_tritonclient_infer_of_200_flowers_equals_classify(client, url, binary_in, binary_out):
    rows = random_flowers(200, seed=26)
    tensor = triton.InferInput(INPUT_NAME, list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows) if binary_in else tensor.set_data_from_numpy(rows, binary_data=False)
    if binary_in and binary_out:
        result = client.infer(MODEL, [tensor])  # the documentation's example, unchanged
    else:
        outputs = [triton.InferRequestedOutput(name, binary_data=binary_out) for name in ("probabilities", "species")]
        result = client.infer(MODEL, [tensor], outputs=outputs)
    for output in result.get_response()["outputs"]:
        assert ("data" not in output) == binary_out and ("parameters" in output) == binary_out
    species = [name.decode() if isinstance(name, bytes) else name for name in result.as_numpy("species").tolist()]
    assert_agrees_with_classify(species, result.as_numpy("probabilities"), classify_each(url, rows))


def test_tritonclient_fp32_binary_tensor_is_read_as_its_float32_values(client, url):
    rows = random_flowers(50, seed=32).astype(np.float32)
    tensor = triton.InferInput(INPUT_NAME, list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("species")])
    assert [name.decode() for name in result.as_numpy("species")] == [
        answer["species"] for answer in classify_each(url, rows.astype(np.float64))
    ]
    assert result.as_numpy("probabilities") is None


def test_tritonclient_binary_ten_thousand_flowers(client, url):
    rows = random_flowers(MAX_BATCH_FLOWERS, seed=10)
    tensor = triton.InferInput(INPUT_NAME, list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    result = client.infer(MODEL, [tensor])
    flowers = [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]
    expected = requests.post(f"{url}/classify_batch", json={"flowers": flowers}, timeout=60).json()
    assert [name.decode() for name in result.as_numpy("species")] == [answer["species"] for answer in expected]
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), [list(answer["probabilities"].values()) for answer in expected]
    )


# ---- a raw HTTP client that builds the binary body itself ----


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_hand_built_binary_request_and_answer(url, datatype):
    rows = random_flowers(20, seed=5)
    body, headers = binary_body(rows, datatype, id="by-hand")
    response = post(url, body, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-request-id"]
    document, values = read_answer(response)
    assert document["id"] == "by-hand" and document["model_name"] == MODEL
    assert [output["parameters"]["binary_data_size"] for output in document["outputs"]] == [
        20 * 3 * 8,
        sum(4 + len(name) for name in values["species"]),
    ]
    as_sent = rows.astype(np.float32).astype(np.float64) if datatype == "FP32" else rows
    assert_agrees_with_classify(
        values["species"], np.array(values["probabilities"]).reshape(20, 3), classify_each(url, as_sent)
    )


def test_octet_stream_is_accepted_as_a_binary_v2_body_and_nowhere_else(url):
    """KServe's client sends binary tensors as application/octet-stream: a V2 infer with the header is read;
    the same type without the header, or on a typed route, is still 415 with the JSON error object."""
    rows = random_flowers(5, seed=9)
    body, headers = binary_body(rows)
    response = post(url, body, {**headers, "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    _, values = read_answer(response)
    assert_agrees_with_classify(
        values["species"], np.array(values["probabilities"]).reshape(5, 3), classify_each(url, rows)
    )
    refused = [
        post(url, body, {"Content-Type": "application/octet-stream"}),  # no header: the body is not JSON
        post(url, body, {**headers, "Content-Type": "application/octet-stream"}, path="/classify_batch"),
    ]
    for answer in refused:
        assert answer.status_code == 415, answer.text
        assert "application/octet-stream" in answer.json()["error"]


def test_binary_outputs_only_where_asked(url):
    body, headers = binary_body(random_flowers(3, seed=1), outputs={"species": True, "probabilities": False})
    response = post(url, body, headers)
    document, values = read_answer(response)
    species, probabilities = document["outputs"]
    assert species["parameters"] == {"binary_data_size": sum(4 + len(name) for name in values["species"])}
    assert "data" not in species and probabilities["data"] == values["probabilities"]
    assert int(response.headers[HEADER]) < len(response.content)
    # binary_data on an output wins over binary_data_output; all false: a plain JSON answer without the header
    document = {
        "inputs": [{"name": INPUT_NAME, "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "species", "parameters": {"binary_data": False}}],
    }
    plain = post(url, orjson.dumps(document), {"Content-Type": "application/json"})
    assert HEADER.lower() not in plain.headers and plain.headers["content-type"] == "application/json"
    assert plain.json()["outputs"] == [{"name": "species", "shape": [1], "datatype": "BYTES", "data": ["setosa"]}]


def test_binary_flowers_are_logged_under_the_answers_request_id(server):
    from tests.service.test_request_id import logged

    rows = random_flowers(4, seed=9).round(2)
    response = post(server.url, *binary_body(rows))
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    lines = logged(monitor_dir(), {request_id}, len(rows))[request_id]
    assert [[line[name] for name in FEATURES] for line in lines] == rows.tolist()
    assert [line["species"] for line in lines] == read_answer(response)[1]["species"]


# ---- malformed binary requests: a 4xx with {"error": ...} naming the problem; never a 5xx, never a hang ----

ROWS = random_flowers(2, seed=3)
GOOD_BODY, GOOD_HEADERS = binary_body(ROWS)
JSON_LENGTH = int(GOOD_HEADERS[HEADER])


def with_header(value: str, body: bytes = GOOD_BODY) -> tuple[bytes, dict[str, str]]:
    return body, {HEADER: value}


def with_tensor(raw: bytes | None = None, **changes) -> tuple[bytes, dict[str, str]]:
    """The good request with its tensor's JSON changed, followed by `raw` (default: the good tensor's bytes)."""
    document = orjson.loads(GOOD_BODY[:JSON_LENGTH])
    document["inputs"][0].update(changes)
    head = orjson.dumps(document)
    return head + (GOOD_BODY[JSON_LENGTH:] if raw is None else raw), {HEADER: str(len(head))}


def with_request(**changes) -> tuple[bytes, dict[str, str]]:
    """The good request with top-level fields of its JSON part changed."""
    head = orjson.dumps({**orjson.loads(GOOD_BODY[:JSON_LENGTH]), **changes})
    return head + GOOD_BODY[JSON_LENGTH:], {HEADER: str(len(head))}


def with_values(*values: float) -> tuple[bytes, dict[str, str]]:
    raw = np.array(values, dtype="<f8").tobytes()
    return with_tensor(raw, shape=[1, 4], parameters={"binary_data_size": len(raw)})


MALFORMED = {
    "header longer than the body": (
        with_header(str(len(GOOD_BODY) + 1)),
        f"{JSON_LENGTH + 65} bytes of JSON, but the body has only {len(GOOD_BODY)} bytes",
    ),
    "header far longer than the body": (with_header("999999999999999"), "bytes of JSON, but the body has only"),
    "header not a number": (with_header("sixty"), "Inference-Header-Content-Length header: 'sixty' is not a number"),
    "header negative": (with_header("-12"), "'-12' is not a number of bytes"),
    "header a float": (with_header(f"{JSON_LENGTH}.0"), "is not a number of bytes"),
    "header too many digits": (with_header("9" * 400), "is not a number of bytes"),
    "header empty": (with_header(""), "'' is not a number of bytes"),
    "header cuts the JSON": (with_header(str(JSON_LENGTH - 5)), "the JSON part (the first"),
    "header zero": (with_header("0"), "the JSON part (the first 0 bytes): body: Invalid JSON"),
    "size not shape x datatype": (
        with_tensor(parameters={"binary_data_size": 32}),
        "binary_data_size: 32 bytes do not match shape [2, 4] of FP64 (2 x 4 x 8 = 64 bytes)",
    ),
    "FP32 size for an FP64 tensor": (
        with_tensor(np.zeros(8, "<f4").tobytes(), parameters={"binary_data_size": 32}),
        "32 bytes do not match shape [2, 4] of FP64",
    ),
    "shape larger than the bytes": (with_tensor(shape=[3, 4]), "64 bytes do not match shape [3, 4] of FP64"),
    "negative size": (with_tensor(parameters={"binary_data_size": -64}), "binary_data_size: -64 is not a number"),
    "huge size": (with_tensor(parameters={"binary_data_size": 2**62}), f"{2**62} bytes do not match shape"),
    "size not an integer": (with_tensor(parameters={"binary_data_size": 64.0}), "64.0 is not a number of bytes"),
    "size a string": (with_tensor(parameters={"binary_data_size": "64"}), "'64' is not a number of bytes"),
    "size true": (with_tensor(parameters={"binary_data_size": True}), "True is not a number of bytes"),
    "trailing bytes": ((GOOD_BODY + b"\x00" * 8, GOOD_HEADERS), "72 bytes follow the JSON part, but binary_data_size"),
    "missing bytes": ((GOOD_BODY[:-8], GOOD_HEADERS), "56 bytes follow the JSON part, but binary_data_size says 64"),
    "bytes after a JSON tensor": (
        with_tensor(data=ROWS.tolist(), parameters={}),
        "64 bytes follow the JSON part, but no input has parameters.binary_data_size",
    ),
    "data and binary both": (with_tensor(data=ROWS.tolist()), "both data and parameters.binary_data_size"),
    "datatype INT32": (with_tensor(datatype="INT32"), "inputs[0].datatype: Input should be 'FP64' or 'FP32'"),
    "datatype BYTES": (with_tensor(datatype="BYTES"), "(got 'BYTES')"),
    "datatype FP16": (with_tensor(datatype="FP16"), "(got 'FP16')"),
    "too many flowers": (
        with_tensor(b"", shape=[MAX_BATCH_FLOWERS + 1, 4], parameters={"binary_data_size": 0}),
        "[10001, 4] is not [N, 4] with 1 <= N <= 10000",
    ),
    "NaN": (with_values(float("nan"), 3.5, 1.4, 0.2), "inputs[0] binary value 0 (row 0, sepal_length)"),
    "infinity": (with_values(5.1, float("inf"), 1.4, 0.2), "value 1 (row 0, sepal_width): Input should be a finite"),
    "zero": (with_values(5.1, 3.5, 0.0, 0.2), "value 2 (row 0, petal_length): Input should be greater than 0"),
    "negative": (with_values(5.1, 3.5, 1.4, -0.2), "value 3 (row 0, petal_width): Input should be greater than 0"),
    "too large": (with_values(5.1, 51.0, 1.4, 0.2), "Input should be less than or equal to 50"),
    "binary_data not a boolean": (
        with_request(outputs=[{"name": "species", "parameters": {"binary_data": 1}}]),
        "outputs[0].parameters.binary_data: 1 is not true or false",
    ),
    "JSON part not an object": (with_header("2", b"[]" + GOOD_BODY[JSON_LENGTH:]), "body: Input should be an object"),
    "other model in the JSON part": (with_request(model_name="resnet50"), "model_name: the body names model"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_binary_request_is_refused_naming_the_problem(server, case):
    (body, headers), message = MALFORMED[case]
    started = time.monotonic()
    response = post(server.url, body, headers)
    assert time.monotonic() - started < 10
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"], response.json()["error"]


def test_body_size_limit_applies_to_binary_bodies(server):
    from iris_classifier.serving.middleware import MAX_BODY_BYTES

    head = orjson.dumps({"inputs": [{"name": INPUT_NAME, "shape": [1, 4], "datatype": "FP64"}]})
    declared = post(server.url, head + b"\x00" * MAX_BODY_BYTES, {HEADER: str(len(head))})
    assert declared.status_code == 413 and "limit" in declared.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        yield head
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"\x00" * 65536

    chunked = requests.post(f"{server.url}{INFER}", data=chunks(), headers={HEADER: str(len(head))}, timeout=30)
    assert chunked.status_code == 413, chunked.text
    assert "larger than the limit" in chunked.json()["error"]


def test_a_body_shorter_than_declared_gets_no_answer_and_no_hang(server):
    """A client that declares more bytes than it sends and then closes: the server neither answers nor waits on."""
    host, port = server.url.removeprefix("http://").split(":")
    head = orjson.dumps({"inputs": [{"name": INPUT_NAME, "shape": [1, 4], "datatype": "FP64"}]})
    request = (
        f"POST {INFER} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(head) + 32}\r\n{HEADER}: {len(head)}\r\n\r\n"
    ).encode() + head
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        assert connection.recv(1024) == b""  # closed without an answer
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
