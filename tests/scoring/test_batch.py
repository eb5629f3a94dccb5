"""The scoring step without Spark: a pandas batch in, the same rows with the service's answers out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.scoring.batch import (
    OUTPUT_COLUMNS,
    PROBABILITY_COLUMNS,
    InputColumnsError,
    check_input_columns,
    score_batch,
)
from iris_classifier.scoring.flower_files import BAD_VALUES, ID_COLUMN, flowers


@pytest.fixture(scope="module")
def predictor(stored_model) -> Predictor:
    return Predictor.from_dir(Path(stored_model.path))


def test_every_row_comes_back_once_with_its_columns_unchanged_and_the_services_answers(predictor, stored_model):
    table = flowers(5_000, bad_every=50, seed=3)
    table.insert(0, "survey", "2026")  # any column of the user's comes back as it was
    scored = score_batch(table, predictor, str(stored_model.tag))
    assert list(scored.columns) == [*table.columns, *OUTPUT_COLUMNS]
    pd.testing.assert_frame_equal(scored[table.columns], table)
    good = scored["error"].isna().to_numpy()
    assert good.sum() == 5_000 - 100
    expected = predictor.predict_proba(table.loc[good, list(FEATURES)].astype(np.float64).to_numpy())
    assert (scored.loc[good, list(PROBABILITY_COLUMNS)].to_numpy() == expected).all()  # bit for bit
    assert scored.loc[good, "species"].tolist() == [SPECIES[i] for i in expected.argmax(axis=1)]
    assert (scored["model_version"] == str(stored_model.tag)).all()


def test_a_bad_row_gets_no_answer_and_an_error_naming_its_field_and_rule(predictor):
    table = flowers(700, bad_every=100)
    scored = score_batch(table, predictor, "iris_classifier:test")
    bad = scored[scored["error"].notna()]
    assert bad[ID_COLUMN].tolist() == [str(i) for i in range(99, 700, 100)]
    assert bad["species"].isna().all() and bad[list(PROBABILITY_COLUMNS)].isna().all().all()
    for number, error in enumerate(bad["error"]):
        field = FEATURES[number % len(FEATURES)]
        value, rule = BAD_VALUES[number % len(BAD_VALUES)]
        assert error.startswith(f"{field}: ")
        assert {"missing": "missing", "not_a_number": "not a number", "not_finite": "not a finite number"}.get(
            rule, "out of range"
        ) in error
        assert rule == "missing" or repr(value) in error


def test_the_answer_of_a_row_does_not_depend_on_the_batch_it_sits_in(predictor):
    table = flowers(3_000, bad_every=7, seed=5)
    whole = score_batch(table, predictor, "v")
    parts = pd.concat([score_batch(table.iloc[i : i + 256], predictor, "v") for i in range(0, 3_000, 256)])
    pd.testing.assert_frame_equal(whole, parts.reset_index(drop=True))


def test_numbers_in_typed_columns_score_as_their_text_does(predictor):
    text = pd.DataFrame([{name: str(value) for name, value in flower.items()} for flower in EXAMPLE_FLOWERS.values()])
    typed = text.astype(np.float64)
    as_text, as_numbers = score_batch(text, predictor, "v"), score_batch(typed, predictor, "v")
    assert as_text["species"].tolist() == list(EXAMPLE_FLOWERS) == as_numbers["species"].tolist()
    assert (as_text[list(PROBABILITY_COLUMNS)].to_numpy() == as_numbers[list(PROBABILITY_COLUMNS)].to_numpy()).all()


def test_a_missing_measurement_column_or_a_clashing_output_column_is_refused_by_name():
    with pytest.raises(InputColumnsError, match=r"missing column petal_width .*found: id, sepal_length"):
        check_input_columns(["id", "sepal_length", "sepal_width", "petal_length"])
    with pytest.raises(InputColumnsError, match="column species would be overwritten"):
        check_input_columns([*FEATURES, "species"])
    check_input_columns(["id", *FEATURES])
