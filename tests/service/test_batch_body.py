"""The /classify_batch body read straight to rows: only bodies pydantic accepts, with the same numbers, and the
layouts clients write take it; anything else is left to the general path."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, MAX_BATCH_FLOWERS, MAX_MEASUREMENT_CM
from iris_classifier.serving.batch_body import batch_rows
from tests.service.test_batch_fast_path import pydantic_flowers

DUMPS = {"compact": orjson.dumps, "python": lambda document: json.dumps(document).encode()}


def rows_pydantic_gives(body: bytes) -> np.ndarray | None:
    flowers = pydantic_flowers(body)
    return None if flowers is None else np.array([[flower[name] for name in FEATURES] for flower in flowers])


@pytest.mark.parametrize("layout", DUMPS)
def test_the_layouts_clients_write_take_it_with_pydantics_numbers(layout):
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(0.1, MAX_MEASUREMENT_CM, size=(MAX_BATCH_FLOWERS, 4)), rng.integers(0, 6))
    flowers = [dict(zip(FEATURES, row, strict=True)) for row in values.tolist()]
    flowers[0] = {name: 2 for name in FEATURES}  # integers
    flowers[1]["sepal_length"] = 1e1  # written 10.0; and an exponent below
    body = DUMPS[layout]({"flowers": flowers}).replace(b"10.0", b"1e1", 1)
    rows = batch_rows(body)
    assert rows is not None
    assert rows.tobytes() == rows_pydantic_gives(body).tobytes()


@pytest.mark.parametrize(
    "body",
    [
        b'{"flowers": []}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":1}]',  # truncated
        b'{"flowers":[{"sepal_length":01,"sepal_width":1,"petal_length":1,"petal_width":1}]}',  # leading zero
        b'{"flowers":[{"sepal_length":.5,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":5.,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":+5,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":5 1,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":1e999,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":"5","sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":true,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":0,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":51,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":-1,"sepal_width":1,"petal_length":1,"petal_width":1}]}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":1,"x":1}]}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1}]}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":\x011}]}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":[1]}]}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":1},{}]}',
        b'{"flowers":[{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":1}],"x":1}',
        orjson.dumps({"flowers": [EXAMPLE_FLOWERS["setosa"]] * (MAX_BATCH_FLOWERS + 1)}),
    ],
)
def test_anything_else_is_left_to_the_general_path(body):
    assert batch_rows(body) is None


measurement = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-10, max_value=10**20),
    st.floats(min_value=1e-3, max_value=MAX_MEASUREMENT_CM),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.fixed_dictionaries({name: measurement for name in FEATURES}), min_size=1, max_size=20),
    st.sampled_from(list(DUMPS)),
    st.integers(min_value=0, max_value=10_000),
    st.binary(max_size=3),
)
def test_it_accepts_only_what_pydantic_accepts_with_the_same_numbers(flowers, layout, at, splice):
    body = json.dumps({"flowers": flowers}, separators=(",", ":") if layout == "compact" else None).encode()
    if splice:  # a few bytes in or out somewhere: mostly invalid bodies
        at %= len(body)
        body = body[:at] + splice + body[at + len(splice) // 2 :]
    rows = batch_rows(body)
    if rows is not None:
        expected = rows_pydantic_gives(body)
        assert expected is not None, body
        assert rows.tobytes() == expected.tobytes()
