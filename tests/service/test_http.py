"""The HTTP API of a real `bentoml serve` process: the source service and the built Bento."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_BATCH_FLOWERS, MAX_MEASUREMENT_CM, SPECIES
from iris_classifier.model.files import GRID_FILE
from iris_classifier.model.grid import cells
from iris_classifier.model.store import ModelCard
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import RAW_CSV
from tests.conftest import ROOT


def classify(url: str, body, **kwargs) -> requests.Response:
    return requests.post(f"{url}/classify", json=body, timeout=10, **kwargs)


@pytest.mark.parametrize("species", SPECIES)
def test_known_flower_gives_its_species(url, species):
    response = classify(url, EXAMPLE_FLOWERS[species])
    assert response.status_code == 200
    body = response.json()
    assert body["species"] == species
    assert set(body["probabilities"]) == set(SPECIES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    assert max(body["probabilities"], key=body["probabilities"].get) == species
    assert body["model_version"] == ModelCard.read().tag
    assert body["warnings"] == []
    assert body["request_id"] == response.headers["X-Request-ID"]  # tests/service/test_request_id.py: the log's
    assert list(body) == ["species", "probabilities", "model_version", "warnings", "request_id"]


def test_valid_value_outside_training_range_is_predicted_with_a_warning(url):
    ranges = requests.get(f"{url}/model", timeout=10).json()["feature_ranges_cm"]
    flower = {**EXAMPLE_FLOWERS["virginica"], "petal_length": ranges["petal_length"][1] + 3.0, "sepal_width": 0.5}
    response = classify(url, flower)
    assert response.status_code == 200
    assert response.json()["warnings"] == ["sepal_width", "petal_length"]


def test_batch_answers_in_request_order(url):
    frame = pd.read_csv(RAW_CSV).sample(frac=1.0, random_state=3)
    flowers = frame[list(FEATURES)].to_dict(orient="records")
    response = requests.post(f"{url}/classify_batch", json={"flowers": flowers}, timeout=30)
    assert response.status_code == 200
    results = response.json()
    assert len(results) == 150
    one = classify(url, flowers[0]).json()
    assert one.pop("request_id") != response.headers["X-Request-ID"]
    assert one == results[0]  # the same answer, without the request's id (the batch's is in its header)
    predicted = [r["species"] for r in results]
    accuracy = sum(p == t for p, t in zip(predicted, frame["species"], strict=True)) / 150
    assert accuracy >= load_params("evaluate")["min_accuracy"]
    # The same flowers one by one give the same answers in the same order.
    assert predicted[:20] == [classify(url, f).json()["species"] for f in flowers[:20]]


def test_batch_limit_is_enforced_with_a_4xx_naming_it(url):
    flower = EXAMPLE_FLOWERS["setosa"]
    full = requests.post(f"{url}/classify_batch", json={"flowers": [flower] * MAX_BATCH_FLOWERS}, timeout=60)
    assert full.status_code == 200 and len(full.json()) == MAX_BATCH_FLOWERS
    over = requests.post(f"{url}/classify_batch", json={"flowers": [flower] * (MAX_BATCH_FLOWERS + 1)}, timeout=60)
    assert 400 <= over.status_code < 500
    assert str(MAX_BATCH_FLOWERS) in over.text and "flowers" in over.text
    empty = requests.post(f"{url}/classify_batch", json={"flowers": []}, timeout=10)
    assert empty.status_code == 400 and "flowers" in empty.text


def test_model_endpoint_names_the_served_model(url):
    info = requests.get(f"{url}/model", timeout=10).json()
    recorded = ModelCard.read()
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    train_md5 = next(d["md5"] for d in lock["stages"]["train"]["deps"] if d["path"] == "data/prepared/train.csv")
    assert info["tag"] == recorded.tag
    assert info["code_md5"] == recorded.code_md5
    assert info["train_data_md5"] == train_md5
    assert info["params"] == load_params("train")
    assert info["held_out_accuracy"] == pytest.approx(
        json.loads((ROOT / "reports/metrics.json").read_text())["held_out_accuracy"], abs=1e-6
    )
    assert info["backend"] == "onnx"
    assert set(info["feature_medians_cm"]) == set(FEATURES)
    # The forest's lookup table, built beside the first requests: in use within seconds of readiness.
    deadline = time.monotonic() + 30
    while info["lookup_table_cells"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        info = requests.get(f"{url}/model", timeout=10).json()
    import bentoml

    thresholds = json.loads((Path(bentoml.models.get(info["tag"]).path) / GRID_FILE).read_text())["thresholds"]
    assert info["lookup_table_cells"] == cells(thresholds)
    assert info["species"] == list(SPECIES) and info["features"] == list(FEATURES)


def test_health_endpoints(url):
    assert requests.get(f"{url}/livez", timeout=5).status_code == 200
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200


def metric_value(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? ([0-9.e+-]+)$", re.MULTILINE)
    return sum(float(v) for found, v in pattern.findall(text) if labels in found)


def test_metrics_count_predictions_per_species_and_time_the_model(url):
    before = requests.get(f"{url}/metrics", timeout=5).text
    for _ in range(3):
        classify(url, EXAMPLE_FLOWERS["virginica"])
    classify(url, EXAMPLE_FLOWERS["setosa"])
    after = requests.get(f"{url}/metrics", timeout=5).text
    counter = "iris_predictions_total"
    assert (
        metric_value(after, counter, 'species="virginica"') - metric_value(before, counter, 'species="virginica"') == 3
    )
    assert metric_value(after, counter, 'species="setosa"') - metric_value(before, counter, 'species="setosa"') == 1
    count = "iris_model_call_seconds_count"
    assert metric_value(after, count) - metric_value(before, count) == 4


def test_openapi_documents_each_endpoint_with_an_example(url):
    spec = requests.get(f"{url}/docs.json", timeout=5).json()
    assert {"/classify", "/classify_batch", "/model", "/readyz", "/metrics"} <= set(spec["paths"])
    assert spec["paths"]["/classify"]["post"]["requestBody"]["required"] is True
    flower = spec["components"]["schemas"]["Flower"]
    assert flower["example"] == {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    bound = flower["properties"]["sepal_length"]
    # OpenAPI 3.0 form of "> 0 and <= 50".
    assert bound["minimum"] == 0 and bound["exclusiveMinimum"] is True
    assert bound["maximum"] == MAX_MEASUREMENT_CM and "exclusiveMaximum" not in bound
    assert not [path for path in spec["paths"] if path.startswith("/ui")]  # the UI is not part of the API
    assert "cm" in bound["description"]


def test_openapi_documents_the_answers_with_their_request_id(url):
    spec = requests.get(f"{url}/docs.json", timeout=5).json()

    def ok(path: str) -> dict:
        return spec["paths"][path]["post"]["responses"]["200"]

    for path in ("/classify", "/classify_batch"):
        assert ok(path)["headers"]["X-Request-ID"]["schema"] == {"type": "string"}
    single = ok("/classify")["content"]["application/json"]["schema"]
    assert single["properties"]["request_id"]["type"] == "string"
    assert {"species", "probabilities", "model_version", "request_id"} <= set(single["required"])
    batch = ok("/classify_batch")["content"]["application/json"]["schema"]
    assert batch["type"] == "array" and batch["items"] == {"$ref": "#/components/schemas/Prediction"}
    assert "request_id" not in spec["components"]["schemas"]["Prediction"]["properties"]
