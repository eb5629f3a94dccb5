"""A table's measurements are judged by the typed API's rules: the vectorised check (domain/measurements.py) and
pydantic agree on every value, whether the table holds numbers (Parquet) or text (CSV)."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from iris_classifier.domain.measurements import AT_MOST_CM, RULES, check_measurements
from iris_classifier.domain.schema import EXAMPLE_FLOWER, FEATURES, MAX_MEASUREMENT_CM, FlowerFields

# pydantic's error types -> the rule names of domain/measurements.py
PYDANTIC_RULES = {
    "missing": "missing",
    "float_type": "not_a_number",
    "float_parsing": "not_a_number",
    "finite_number": "not_finite",
    "greater_than": "out_of_range",
    "less_than_equal": "out_of_range",
}
FLOWER = TypeAdapter(FlowerFields)
FIELD = "petal_length"  # the measurement under test; the others are the example flower's


def pydantic_verdict(body: bytes) -> dict[str, str]:
    """{field: rule} pydantic refuses a /classify_batch flower (JSON) for; {} when it accepts it."""
    try:
        FLOWER.validate_json(body)
    except ValidationError as error:
        return {str(problem["loc"][0]): PYDANTIC_RULES[problem["type"]] for problem in error.errors()}
    return {}


def table_verdict(cell: object, dtype: object = object) -> tuple[dict[str, str], float]:
    """{field: rule} and the value in cm the table check gives one row whose FIELD holds `cell`."""
    table = pd.DataFrame({name: [value] for name, value in EXAMPLE_FLOWER.items()})
    table[FIELD] = pd.Series([cell], dtype=dtype)
    checked = check_measurements(table)
    return checked.rule_names(0), float(checked.values[0, FEATURES.index(FIELD)])


def body_with(text: str) -> bytes:
    """A flower's JSON with FIELD's value written as `text` (a JSON number, or any other JSON value)."""
    others = ", ".join(f'"{name}": {value!r}' for name, value in EXAMPLE_FLOWER.items() if name != FIELD)
    return f'{{{others}, "{FIELD}": {text}}}'.encode()


def test_the_bounds_are_read_from_the_pydantic_measurement():
    assert AT_MOST_CM == MAX_MEASUREMENT_CM
    assert RULES["out_of_range"] == f"out of range (must be > 0 and <= {MAX_MEASUREMENT_CM:g} cm)"


EDGES = [0.0, -0.0, 5e-324, 1e-300, 0.1, 5.1, 49.99999999999999, 50.0, 50.00000000000001, 51.0, -1.0, 1e308]
around_the_bounds = st.one_of(
    st.floats(allow_nan=False),
    st.floats(min_value=-1e-6, max_value=1e-6, allow_nan=False),
    st.floats(min_value=MAX_MEASUREMENT_CM - 1e-6, max_value=MAX_MEASUREMENT_CM + 1e-6),
    st.sampled_from(EDGES),
)


@settings(max_examples=300, deadline=None)
@given(value=around_the_bounds)
def test_a_number_column_is_judged_as_pydantic_judges_the_same_number(value):
    # JSON has no infinity: 1e999 is what parses to it
    text = orjson.dumps(value).decode() if math.isfinite(value) else ("1e999" if value > 0 else "-1e999")
    expected = pydantic_verdict(body_with(text))
    verdict, cm = table_verdict(value, np.float64)
    assert verdict == expected
    if not expected:
        assert cm == value


@settings(max_examples=300, deadline=None)
@given(value=around_the_bounds, style=st.sampled_from(["%r", "%.17g", "%.3f", "%e", "%.1f"]))
def test_numeric_text_is_judged_and_read_as_the_same_json_number(value, style):
    text = style % value if math.isfinite(value) else ("1e999" if value > 0 else "-1e999")
    expected = pydantic_verdict(body_with(text))
    verdict, cm = table_verdict(text)
    assert verdict == expected
    if not expected:  # the same float64 as the service's JSON parsers give /classify_batch
        assert cm == orjson.loads(text) == json.loads(body_with(text))[FIELD]


@pytest.mark.parametrize(
    ("cell", "json_value"),
    [("wide", '"wide"'), ("5,1", '"5,1"'), ("1.2.3", '"1.2.3"'), (True, "true"), (False, "false"), ([1], "[1]")],
)
def test_what_is_not_a_number_is_refused_by_both(cell, json_value):
    assert pydantic_verdict(body_with(json_value)) == {FIELD: "not_a_number"}
    assert table_verdict(cell)[0] == {FIELD: "not_a_number"}


def test_a_boolean_column_is_not_numbers():
    assert table_verdict(True, bool)[0] == {FIELD: "not_a_number"} == pydantic_verdict(body_with("true"))


@pytest.mark.parametrize("cell", [None, "", "   ", float("nan"), pd.NA])
def test_an_empty_cell_is_missing_as_an_absent_field_is(cell):
    others = {name: value for name, value in EXAMPLE_FLOWER.items() if name != FIELD}
    assert pydantic_verdict(json.dumps(others).encode()) == {FIELD: "missing"}
    assert table_verdict(cell)[0] == {FIELD: "missing"}


def test_nan_in_a_number_column_is_an_empty_cell_and_nan_text_is_not_finite():
    # pandas marks an empty cell of a float column with NaN: a table cannot tell the two apart.
    assert table_verdict(float("nan"), np.float64)[0] == {FIELD: "missing"}
    assert table_verdict("nan")[0] == {FIELD: "not_finite"} == table_verdict("inf")[0] == table_verdict("-inf")[0]
    assert pydantic_verdict(body_with("1e999")) == {FIELD: "not_finite"}


def test_integers_are_measurements_as_in_the_api():
    for value in (0, 1, 50, 51):
        expected = pydantic_verdict(body_with(str(value)))
        assert table_verdict(value, np.int64)[0] == expected == table_verdict(str(value))[0]
    # Too big for a float: as JSON text it reads as infinity; as a Python int it is no float at all.
    huge = 10**400
    assert table_verdict(str(huge))[0] == {FIELD: "not_finite"} == pydantic_verdict(body_with(str(huge)))
    with pytest.raises(ValidationError, match="float_type"):
        FLOWER.validate_python({**EXAMPLE_FLOWER, FIELD: huge})
    assert table_verdict(huge)[0] == {FIELD: "not_a_number"}


def test_every_broken_field_of_a_row_is_named_with_its_rule_and_value():
    table = pd.DataFrame(
        {
            "sepal_length": ["5.1", "", "7.0"],
            "sepal_width": ["3.5", "wide", "3.2"],
            "petal_length": ["1.4", "60", "4.7"],
            "petal_width": ["0.2", "inf", "1.4"],
        }
    )
    checked = check_measurements(table)
    assert checked.valid.tolist() == [True, False, True]
    assert checked.errors().tolist() == [
        "",
        "sepal_length: missing (a measurement in cm is required); sepal_width: not a number: got 'wide'; "
        "petal_length: out of range (must be > 0 and <= 50 cm): got '60'; petal_width: not a finite number: got 'inf'",
        "",
    ]
    assert checked.values[[0, 2]].tolist() == [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4]]
    assert np.isnan(checked.values[1]).all()
