"""Fuzzing: schemathesis against the service's own OpenAPI document, and a property of the shared schema."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from iris_classifier.domain.schema import FEATURES, MAX_MEASUREMENT_CM, Flower
from tests.conftest import run


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server, artifacts_dir):
    schemathesis = str(Path(sys.executable).parent / "schemathesis")
    result = run(
        [
            schemathesis, "--config-file", str(Path(__file__).with_name("schemathesis.toml")),  # V2 infer: see there
            "run", f"{server.url}/docs.json",
            "--checks", "all",
            "--max-examples", "60",
            "--seed", "1",
            "--request-timeout", "30",
            "--report", "junit", "--report-dir", str(artifacts_dir / "schemathesis"),
        ],
        check=False,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    # every endpoint (9 of them V2, 2 feedback), none excluded
    assert "Operations:       18 selected / 18 total" in result.stdout


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
flower_like = st.fixed_dictionaries({}, optional={name: json_values for name in FEATURES}) | json_values


def is_measurement(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= MAX_MEASUREMENT_CM
    )


@settings(max_examples=400, deadline=None)
@given(flower_like)
def test_any_json_value_is_four_valid_measurements_or_refused_naming_a_field(value):
    try:
        flower = Flower.model_validate(value)
    except ValidationError as error:
        locations = [e["loc"] for e in error.errors()]
        if isinstance(value, dict):
            # Every complaint names one of the four fields (or the extra key that is not allowed).
            assert all(loc and (loc[0] in FEATURES or loc[0] in value) for loc in locations)
            assert not (set(value) == set(FEATURES) and all(is_measurement(value[n]) for n in FEATURES))
        return
    assert isinstance(value, dict) and set(value) == set(FEATURES)
    assert all(is_measurement(value[name]) for name in FEATURES)
    assert all(math.isfinite(v) and 0 < v <= MAX_MEASUREMENT_CM for v in flower.as_row())
