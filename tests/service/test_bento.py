"""The built Bento (what the image runs) serves what the source service serves: one smoke test, not the suite twice."""

from __future__ import annotations

import pandas as pd
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.project.paths import RAW_CSV
from iris_classifier.registry.versions import served_release
from iris_classifier.serving.private_apis import SERVED_BENTO_LABELS

ANSWER_KEYS = ("species", "probabilities", "model_version", "warnings")


def without_request_ids(answers: list[dict]) -> list[dict]:
    return [{key: answer[key] for key in ANSWER_KEYS} for answer in answers]


def test_the_bento_answers_exactly_as_the_source_service(server, bento_server, bento_tag):
    flowers = pd.read_csv(RAW_CSV)[list(FEATURES)].to_dict(orient="records")
    flowers.append({"sepal_length": 9.9, "sepal_width": 0.9, "petal_length": 1.1, "petal_width": 3.3})  # warnings
    source, bento = (
        requests.post(f"{url}/classify_batch", json={"flowers": flowers}, timeout=30)
        for url in (server.url, bento_server.url)
    )
    assert source.status_code == bento.status_code == 200
    assert without_request_ids(bento.json()) == without_request_ids(source.json())
    for species in SPECIES:
        one = requests.post(f"{bento_server.url}/classify", json=EXAMPLE_FLOWERS[species], timeout=10).json()
        assert one["species"] == species
    refused = requests.post(f"{bento_server.url}/classify", json={**EXAMPLE_FLOWERS["setosa"], "petal_width": -1})
    assert refused.status_code == 400 and "petal_width" in refused.text
    models = [requests.get(f"{url}/model", timeout=10).json() for url in (server.url, bento_server.url)]
    assert models[1]["tag"] == models[0]["tag"] and models[1]["code_md5"] == models[0]["code_md5"]
    assert models[1]["bento_commit"] == bento_tag.split(":", 1)[1] != models[0]["bento_commit"]


def test_served_bento_labels_the_bento_s_registry_labels_reach_its_model_card(bento_server, bento_tag):
    import bentoml

    labels = bentoml.bentos.get(bento_tag).info.labels
    model = requests.get(f"{bento_server.url}/model", timeout=10).json()
    assert model["registry"] == served_release(labels)["registry"], SERVED_BENTO_LABELS.tripped(
        f"/model says {model['registry']!r}: the service no longer sees the labels of the Bento it serves"
    )
