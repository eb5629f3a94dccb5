"""Bad input never reaches the model and never gets a 5xx; the message names the field and the rule."""

from __future__ import annotations

import json
import pickle

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, MAX_MEASUREMENT_CM

GOOD = EXAMPLE_FLOWERS["setosa"]
JSON = {"Content-Type": "application/json"}


def with_value(field: str, raw: str) -> bytes:
    """The canonical flower with one field's JSON text replaced (NaN, 1e309 ... cannot be built with json.dumps)."""
    body = json.dumps(GOOD)
    return body.replace(f'"{field}": {GOOD[field]}', f'"{field}": {raw}').encode()


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD.items() if k != field}).encode()


# (body, headers, expected status, fragments the message must contain)
CASES = {
    "missing field": (without("petal_width"), JSON, 400, ["petal_width", "Field required"]),
    "string number": (with_value("sepal_length", '"5.1"'), JSON, 400, ["sepal_length", "valid number"]),
    "word": (with_value("sepal_width", '"wide"'), JSON, 400, ["sepal_width", "valid number"]),
    "null": (with_value("petal_length", "null"), JSON, 400, ["petal_length", "valid number"]),
    "true": (with_value("petal_width", "true"), JSON, 400, ["petal_width", "valid number"]),
    "false": (with_value("petal_width", "false"), JSON, 400, ["petal_width", "valid number"]),
    "NaN": (with_value("sepal_length", "NaN"), JSON, 400, ["sepal_length", "finite number"]),
    "Infinity": (with_value("sepal_width", "Infinity"), JSON, 400, ["sepal_width", "finite number"]),
    "-Infinity": (with_value("sepal_width", "-Infinity"), JSON, 400, ["sepal_width", "finite number"]),
    "1e309 overflows to infinity": (with_value("petal_length", "1e309"), JSON, 400, ["petal_length", "finite"]),
    "zero": (with_value("sepal_length", "0"), JSON, 400, ["sepal_length", "greater than 0"]),
    "negative": (with_value("sepal_length", "-1.5"), JSON, 400, ["sepal_length", "greater than 0"]),
    "over the physical bound": (
        with_value("petal_length", str(MAX_MEASUREMENT_CM + 0.1)),
        JSON,
        400,
        ["petal_length", f"less than or equal to {MAX_MEASUREMENT_CM:g}"],
    ),
    "nested object": (with_value("sepal_length", '{"cm": 5.1}'), JSON, 400, ["sepal_length", "valid number"]),
    "array": (with_value("sepal_length", "[5.1]"), JSON, 400, ["sepal_length", "valid number"]),
    "unknown extra field": (
        json.dumps({**GOOD, "colour": "blue"}).encode(),
        JSON,
        400,
        ["colour", "Extra inputs are not permitted"],
    ),
    "malformed JSON": (b'{"sepal_length": 5.1,', JSON, 400, ["Invalid JSON"]),
    "empty body": (b"", JSON, 400, ["sepal_length", "petal_width", "Field required"]),
    "top-level array": (b"[5.1, 3.5, 1.4, 0.2]", JSON, 400, ["object"]),
    "top-level string": (b'"setosa"', JSON, 400, ["object"]),
    "plain text content type": (b"sepal_length=5.1", {"Content-Type": "text/plain"}, 415, ["application/json"]),
    "multipart without boundary": (
        json.dumps(GOOD).encode(),
        {"Content-Type": "multipart/form-data"},
        415,
        ["'multipart/form-data' is not accepted"],
    ),
    "pickle payload": (
        pickle.dumps(GOOD),
        {"Content-Type": "application/vnd.bentoml+pickle"},
        415,
        ["'application/vnd.bentoml+pickle' is not accepted"],
    ),
    "form payload": (
        b"sepal_length=5.1&sepal_width=3.5",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        ["application/json"],
    ),
    "oversized body": (b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}', JSON, 413, ["limit"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_with_a_4xx_naming_field_and_rule(server, case):
    body, headers, status, fragments = CASES[case]
    response = requests.post(f"{server.url}/classify", data=body, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    for fragment in fragments:
        assert fragment in response.text
    assert "Traceback" not in response.text
    # ... and the service keeps serving.
    assert requests.post(f"{server.url}/classify", json=GOOD, timeout=10).json()["species"] == "setosa"


def test_every_invalid_flower_in_a_batch_is_named_by_position(server):
    flowers = [GOOD, {**GOOD, "sepal_width": -1}, GOOD, {**GOOD, "petal_length": "long"}]
    response = requests.post(f"{server.url}/classify_batch", json={"flowers": flowers}, timeout=10)
    assert response.status_code == 400
    locations = [tuple(error["loc"]) for error in response.json()["detail"]]
    assert locations == [("flowers", 1, "sepal_width"), ("flowers", 3, "petal_length")]
