"""The service class called in-process: the same answers as the stored model, without HTTP."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.project.paths import RAW_CSV


def classify(service, **flower: float) -> dict:
    # In a thread of its own: other tests (Playwright's sync API) may leave a loop running in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        response = pool.submit(asyncio.run, service.classify(**flower)).result()
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
    batch = service.classify_batch(flowers=[EXAMPLE_FLOWERS["setosa"]])
    ids.append(batch.headers["X-Request-ID"])
    assert all(request_id.isdigit() for request_id in ids) and len(set(ids)) == 4


def test_batch_in_process_matches_the_sklearn_reference(service, stored_model):
    frame = pd.read_csv(RAW_CSV)
    flowers = frame[list(FEATURES)].to_dict(orient="records")
    results = json.loads(service.classify_batch(flowers=flowers).body)
    reference = Predictor.from_dir(Path(stored_model.path), prefer="sklearn").predict_proba(
        frame[list(FEATURES)].to_numpy()
    )
    assert [r["species"] for r in results] == [SPECIES[i] for i in reference.argmax(axis=1)]
    served = np.array([[r["probabilities"][s] for s in SPECIES] for r in results])
    assert np.abs(served - reference).max() <= 0.02


def test_out_of_range_fields_are_listed_in_feature_order(service):
    ranges = service.card.feature_ranges_cm
    flower = {name: ranges[name][1] + 1 for name in FEATURES}
    assert classify(service, **flower)["warnings"] == list(FEATURES)
    inside = {name: (ranges[name][0] + ranges[name][1]) / 2 for name in FEATURES}
    assert classify(service, **inside)["warnings"] == []
    edge = {name: ranges[name][0] for name in FEATURES}  # the bounds themselves were seen in training
    assert classify(service, **edge)["warnings"] == []
