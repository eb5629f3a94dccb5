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


def test_the_bento_serves_the_open_inference_protocol_over_grpc_too(server, bento_server):
    """The Bento packs the gRPC server and its stubs: tritonclient at its defaults gets the source's answers."""
    import numpy as np
    import tritonclient.grpc as triton

    from iris_classifier.serving.v2.types import INPUT_NAME

    rows = pd.read_csv(RAW_CSV)[list(FEATURES)].to_numpy()
    answers = []
    for served in (server, bento_server):
        client = triton.InferenceServerClient(url=served.grpc_target)
        try:
            assert client.is_server_live() and client.is_model_ready("iris_classifier")
            tensor = triton.InferInput(INPUT_NAME, list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows)
            answers.append(client.infer("iris_classifier", [tensor]).as_numpy("probabilities"))
        finally:
            client.close()
    assert answers[0].shape == (len(rows), len(SPECIES)) and np.array_equal(answers[0], answers[1])
