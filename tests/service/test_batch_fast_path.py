"""The batch fast path accepts only bodies pydantic accepts, with the same numbers; pydantic judges the rest."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from iris_classifier.domain.schema import (
    EXAMPLE_FLOWERS,
    FEATURES,
    MAX_BATCH_FLOWERS,
    MAX_MEASUREMENT_CM,
    FlowerList,
    well_formed_batch,
)

FLOWER = EXAMPLE_FLOWERS["virginica"]


class Batch(TypedDict):
    flowers: FlowerList


# What pydantic alone decides: the batch body's rules, those of /classify_batch, without the fast path.
PYDANTIC = TypeAdapter(Batch)


def pydantic_flowers(body: bytes) -> list[dict[str, float]] | None:
    try:
        return PYDANTIC.validate_json(body)["flowers"]
    except ValidationError:
        return None


def test_a_plain_batch_takes_the_fast_path_with_its_flowers_in_order():
    flowers = [dict(EXAMPLE_FLOWERS[s]) for s in ("setosa", "versicolor", "virginica")] * 1000
    assert well_formed_batch(orjson.dumps({"flowers": flowers})) == flowers


def test_keys_in_any_order_and_integers_are_fine():
    flower = {"petal_width": 2, "sepal_length": 6.3, "petal_length": 6, "sepal_width": 3.3}
    assert well_formed_batch(json.dumps({"flowers": [flower]}, indent=2).encode()) == [flower]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"flowers": []}', id="no flowers"),
        pytest.param(orjson.dumps({"flowers": [FLOWER] * (MAX_BATCH_FLOWERS + 1)}), id="too many flowers"),
        pytest.param(b'{"flowers": [' + orjson.dumps(FLOWER) + b"]", id="truncated"),
        pytest.param(b"[1, 2]", id="not an object"),
        pytest.param(orjson.dumps({"flowers": [FLOWER], "extra": 1}), id="extra top-level key"),
        pytest.param(orjson.dumps({"flowers": FLOWER}), id="flowers not a list"),
        pytest.param(orjson.dumps({"flowers": [[6.3, 3.3, 6.0, 2.5]]}), id="flower not an object"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "colour": 1.0}]}), id="extra key"),
        pytest.param(orjson.dumps({"flowers": [{k: FLOWER[k] for k in FEATURES[:3]}]}), id="missing key"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": "2.5"}]}), id="string number"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": True}]}), id="true"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": None}]}), id="null"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": {}}]}), id="object value"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": [2.5]}]}), id="list value"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": 0}]}), id="zero"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": -1.0}]}), id="negative"),
        pytest.param(orjson.dumps({"flowers": [{**FLOWER, "petal_width": MAX_MEASUREMENT_CM + 0.1}]}), id="over 50"),
        pytest.param(orjson.dumps(FLOWER).join([b'{"flowers": [', b"]}"]).replace(b"2.5", b"NaN"), id="NaN"),
        pytest.param(orjson.dumps(FLOWER).join([b'{"flowers": [', b"]}"]).replace(b"2.5", b"1e400"), id="1e400"),
        pytest.param(
            b'{"flowers": [{"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5, '
            b'"petal_width": 2.5}]}',
            id="duplicated key",
        ),
    ],
)
def test_anything_unusual_is_left_to_pydantic(body):
    assert well_formed_batch(body) is None


valid_measurement = st.floats(min_value=0.1, max_value=MAX_MEASUREMENT_CM) | st.integers(1, int(MAX_MEASUREMENT_CM))
odd_value = (
    st.floats(min_value=-1, max_value=60)
    | st.integers(min_value=-5, max_value=60)
    | st.sampled_from([0, 0.0, 1e-300, MAX_MEASUREMENT_CM, math.nextafter(MAX_MEASUREMENT_CM, 100)])
    | st.booleans()
    | st.none()
    | st.text(max_size=4)
    | st.lists(st.floats(0.1, 5), max_size=2)
    | st.dictionaries(st.sampled_from(FEATURES), st.floats(0.1, 5), max_size=1)
)
# Mostly valid flowers with now and then one odd value, a missing key or an extra key: the cases
# where a fast path could wrongly agree.
flower_like = st.fixed_dictionaries(
    {name: st.one_of(valid_measurement, valid_measurement, valid_measurement, odd_value) for name in FEATURES}
) | st.dictionaries(st.sampled_from([*FEATURES, "colour"]), valid_measurement | odd_value, min_size=3, max_size=5)
batch_like = st.fixed_dictionaries({"flowers": st.lists(flower_like, min_size=0, max_size=4)}) | st.dictionaries(
    st.sampled_from(["flowers", "extra"]), st.lists(flower_like, max_size=2), max_size=2
)


@settings(max_examples=1000, deadline=None)
@given(batch_like)
def test_the_fast_path_accepts_only_what_pydantic_accepts_with_the_same_numbers(document):
    body = json.dumps(document).encode()
    fast, judged = well_formed_batch(body), pydantic_flowers(body)
    event("fast path" if fast is not None else "left to pydantic")
    if fast is None:
        return
    assert judged is not None, f"the fast path accepted a body pydantic refuses: {body!r}"
    assert [[float(f[name]) for name in FEATURES] for f in fast] == [[f[name] for name in FEATURES] for f in judged]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({name: st.floats(min_value=0.1, max_value=MAX_MEASUREMENT_CM) for name in FEATURES}),
        min_size=1,
        max_size=20,
    )
)
def test_every_valid_batch_takes_the_fast_path(flowers):
    assert well_formed_batch(json.dumps({"flowers": flowers}).encode()) == flowers
