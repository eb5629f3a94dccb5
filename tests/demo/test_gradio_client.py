"""The original coursework's app tests, through gradio_client against the standalone demo."""

from __future__ import annotations

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES


@pytest.fixture(scope="module")
def client(standalone_demo):
    from gradio_client import Client

    return Client(standalone_demo.url, verbose=False)


def test_app_passes_the_four_inputs_to_the_service(client, server):
    # A flower outside the training range comes back with exactly the fields we sent out of range.
    flower = {**EXAMPLE_FLOWERS["setosa"], "sepal_width": 9.5, "petal_width": 4.0}
    status, headline, chart, warning, version, *_field_errors = client.predict(
        *[flower[name] for name in FEATURES], api_name="/classify"
    )
    expected = requests.post(f"{server.url}/classify", json=flower, timeout=10).json()
    assert status == ""
    assert headline.startswith(f"## {expected['species']}")
    assert "Sepal width (cm)" in warning and "Petal width (cm)" in warning and "Petal length" not in warning
    assert version == expected["model_version"]
    assert chart["label"] == expected["species"]


@pytest.mark.parametrize("species", SPECIES)
def test_model_response_through_the_app(client, species):
    _, headline, chart, _, _, *_ = client.predict(
        *[EXAMPLE_FLOWERS[species][name] for name in FEATURES], api_name="/classify"
    )
    assert headline.startswith(f"## {species} (")
    assert chart["label"] == species
    assert {c["label"] for c in chart["confidences"]} == set(SPECIES)
