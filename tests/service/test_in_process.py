"""The service class called in-process: the same answers as the stored model, without HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.project.paths import RAW_CSV
from tests.conftest import run_in_own_loop


def classify(service, **flower: float) -> dict:
    response = run_in_own_loop(service.classify(**flower))
    answer = json.loads(response.body)
    assert answer["request_id"] == response.headers["X-Request-ID"]
    return answer


@pytest.fixture(scope="module")
def service(pipeline_ready):
    from service import IrisClassifier

    return IrisClassifier()


def test_service_loads_the_pipeline_model_once_with_the_fast_path(service, stored_model):
    assert service.__is_ready__()
    assert service.version == str(stored_model.tag)
    assert service.predictor.backend == "onnx"


@pytest.mark.parametrize("species", SPECIES)
def test_classify_in_process(service, species):
    result = classify(service, **EXAMPLE_FLOWERS[species])
    assert result["species"] == species
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)


def test_outside_a_server_each_answer_still_gets_an_id_of_its_own(service):
    ids = [classify(service, **EXAMPLE_FLOWERS["setosa"])["request_id"] for _ in range(3)]
    batch = service.classify_batch(flowers=np.array([[EXAMPLE_FLOWERS["setosa"][name] for name in FEATURES]]))
    ids.append(batch.headers["X-Request-ID"])
    assert all(request_id.isdigit() for request_id in ids) and len(set(ids)) == 4


def test_batch_in_process_matches_the_sklearn_reference(service, stored_model):
    frame = pd.read_csv(RAW_CSV)
    results = json.loads(service.classify_batch(flowers=frame[list(FEATURES)].to_numpy()).body)  # rows of cm
    reference = Predictor.from_dir(Path(stored_model.path), prefer="sklearn").predict_proba(
        frame[list(FEATURES)].to_numpy()
    )
    assert [r["species"] for r in results] == [SPECIES[i] for i in reference.argmax(axis=1)]
    served = np.array([[r["probabilities"][s] for s in SPECIES] for r in results])
    assert np.abs(served - reference).max() <= 0.02


def test_a_batch_body_reaches_the_api_as_rows_of_cm_by_either_path():
    """/classify_batch declares rows of cm (an (N, 4) float64 array): what FlowerBatch gives it from the fast path
    and from pydantic's (a body with an extra key takes pydantic's)."""
    from service import FlowerBatch

    flower = EXAMPLE_FLOWERS["virginica"]
    plain = json.dumps({"flowers": [flower, flower]})
    unusual = json.dumps({"flowers": [flower, flower], "note": "pydantic judges this one"})
    for body in (plain, unusual):
        rows = FlowerBatch.model_validate_json(body).flowers
        assert isinstance(rows, np.ndarray) and rows.dtype == np.float64
        assert rows.tolist() == [[flower[name] for name in FEATURES]] * 2


def test_out_of_range_fields_are_listed_in_feature_order(service):
    ranges = service.card.feature_ranges_cm
    flower = {name: ranges[name][1] + 1 for name in FEATURES}
    assert classify(service, **flower)["warnings"] == list(FEATURES)
    inside = {name: (ranges[name][0] + ranges[name][1]) / 2 for name in FEATURES}
    assert classify(service, **inside)["warnings"] == []
    edge = {name: ranges[name][0] for name in FEATURES}  # the bounds themselves were seen in training
    assert classify(service, **edge)["warnings"] == []
