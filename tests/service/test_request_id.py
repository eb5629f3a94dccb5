"""Every answer names its request, and the prediction log files each flower under that name (a real `bentoml serve`).

/classify: `request_id` in the body and the X-Request-ID header; /classify_batch and V2 infer: the header, each
row addressed by (request_id, index). The id is BentoML's own request id (X-BentoML-Request-ID, in hex).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import requests

from iris_classifier.data.production_log import data_files, monitor_dir
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.serving.v2.types import INPUT_NAME

FLOWERS = [
    {"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2},
    {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
    {"sepal_length": 6.7, "sepal_width": 3.1, "petal_length": 5.6, "petal_width": 2.4},
    {"sepal_length": 9.9, "sepal_width": 0.9, "petal_length": 1.1, "petal_width": 3.3},  # out of range: warnings
]


@pytest.fixture(scope="module")
def served(server) -> tuple[str, Path]:
    """The source service: (URL, the folder of its prediction log; the server inherits this environment)."""
    return server.url, monitor_dir()


def logged(log_dir: Path, request_ids: set[str], count: int, timeout: float = 15) -> dict[str, list[dict]]:
    """The log lines of these requests, by request id, in log order (written about once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[dict]] = {request_id: [] for request_id in request_ids}
        for path in data_files(log_dir):
            for line in path.read_bytes().splitlines():
                record = orjson.loads(line)
                if record["request_id"] in found:
                    found[record["request_id"]].append(record)
        if sum(map(len, found.values())) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def bentoml_request_id(response: requests.Response) -> str:
    """BentoML's own header, in decimal (the form the log writes)."""
    return str(int(response.headers["X-BentoML-Request-ID"], 16))


def test_each_classify_answer_names_its_request_and_the_log_line_of_its_flower(served):
    url, log_dir = served
    answers = [requests.post(f"{url}/classify", json=flower, timeout=10) for flower in FLOWERS]
    assert [answer.status_code for answer in answers] == [200] * len(FLOWERS)
    ids = [answer.json()["request_id"] for answer in answers]
    assert all(isinstance(request_id, str) and request_id.isdigit() for request_id in ids)
    assert len(set(ids)) == len(FLOWERS)
    assert [answer.headers["X-Request-ID"] for answer in answers] == ids
    assert [bentoml_request_id(answer) for answer in answers] == ids
    lines = logged(log_dir, set(ids), len(FLOWERS))
    for flower, answer, request_id in zip(FLOWERS, answers, ids, strict=True):
        (line,) = lines[request_id]  # exactly one line: this flower's
        assert [line[name] for name in FEATURES] == list(flower.values())
        body = answer.json()
        assert line["species"] == body["species"] and line["model_version"] == body["model_version"]
        assert [line[f"probability_{species}"] for species in SPECIES] == list(body["probabilities"].values())


def test_a_batch_answer_names_its_request_and_each_row_is_its_index_in_the_log(served):
    url, log_dir = served
    flowers = FLOWERS + [EXAMPLE_FLOWERS[species] for species in SPECIES]
    answer = requests.post(f"{url}/classify_batch", json={"flowers": flowers}, timeout=30)
    assert answer.status_code == 200
    request_id = answer.headers["X-Request-ID"]
    assert request_id.isdigit() and bentoml_request_id(answer) == request_id
    rows = answer.json()
    assert all("request_id" not in row for row in rows)  # one id for the request, in its header
    lines = logged(log_dir, {request_id}, len(flowers))[request_id]
    assert len(lines) == len(flowers)
    for index, (flower, row) in enumerate(zip(flowers, rows, strict=True)):  # (request_id, index) -> the flower
        assert [lines[index][name] for name in FEATURES] == list(flower.values())
        assert lines[index]["species"] == row["species"]
    again = requests.post(f"{url}/classify_batch", json={"flowers": flowers}, timeout=30)
    assert again.headers["X-Request-ID"] != request_id  # a request, an id


def test_a_v2_infer_answer_names_its_request_too(served):
    url, log_dir = served
    rows = [list(flower.values()) for flower in FLOWERS[:2]]
    tensor = {"name": INPUT_NAME, "shape": [2, len(FEATURES)], "datatype": "FP64", "data": rows}
    answer = requests.post(f"{url}/v2/models/iris_classifier/infer", json={"inputs": [tensor]}, timeout=10)
    assert answer.status_code == 200
    request_id = answer.headers["X-Request-ID"]
    lines = logged(log_dir, {request_id}, 2)[request_id]
    assert [[line[name] for name in FEATURES] for line in lines] == rows
    assert [line["species"] for line in lines] == answer.json()["outputs"][1]["data"]


def test_a_refused_flower_is_not_logged_and_gets_no_request_id_of_ours(served):
    url, log_dir = served
    refused = requests.post(f"{url}/classify", json={**FLOWERS[0], "petal_width": -1}, timeout=10)
    assert refused.status_code == 400 and "X-Request-ID" not in refused.headers
    request_id = bentoml_request_id(refused)
    assert logged(log_dir, {request_id}, 1, timeout=2.5)[request_id] == []
