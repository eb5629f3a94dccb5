"""The scoring step without Spark: a pandas batch in, the same rows with the service's answers out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.scoring.batch import score_arrow, score_batch
from iris_classifier.scoring.columns import OUTPUT_COLUMNS, PROBABILITY_COLUMNS, InputColumnsError, check_input_columns
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


# Cells as a CSV or a user's table may hold them: plain decimals in every form, and what only float() reads,
# what nothing reads, and what breaks a rule.
MESSY_CELLS = (
    "5.1", "0.2", "+3.5", ".5", "6.", "1E1", "4.4e-0", "00012.50", "7", "30", "30.0000001", "0", "-1.5",
    " 2.5", "2.5 ", "1_5", "\u0661\u0662", "nan", "NaN", "inf", "-inf", "1e400", "1e-400", "", "wide", "0x1f", "1e",
    None,
)  # fmt: skip


def messy_batch(rows: int, seed: int) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    cells = {
        name: [MESSY_CELLS[i] if rng.random() < 0.3 else f"{rng.uniform(0.1, 8):.{rng.integers(0, 6)}f}"
               for i in rng.integers(0, len(MESSY_CELLS), rows)]
        for name in FEATURES
    }  # fmt: skip
    return pa.RecordBatch.from_pydict({"survey": [f"s{i}" for i in range(rows)], **cells})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_arrow_batch_scores_as_the_same_rows_in_pandas_do(predictor, seed):
    batch = messy_batch(4_000, seed)
    scored = score_arrow(batch, predictor, "v")
    assert scored.schema.names == [*batch.schema.names, *OUTPUT_COLUMNS]
    assert scored.select(batch.schema.names).equals(batch)  # the user's columns as they were
    expected = score_batch(batch.to_pandas(), predictor, "v")
    pd.testing.assert_frame_equal(scored.to_pandas(), expected)  # values bit for bit, the same error texts
    refused = expected["error"].notna()
    assert 0 < refused.sum() < len(expected)  # both kinds of row were there


def test_typed_arrow_columns_score_as_in_pandas(predictor):
    rows = 2_000
    rng = np.random.default_rng(7)
    floats = rng.uniform(-1, 40, rows)
    floats[::37] = np.nan
    batch = pa.RecordBatch.from_pydict(
        {
            "sepal_length": pa.array(floats),  # NaN: pandas' missing value
            "sepal_width": pa.array([None if i % 41 else float(v) for i, v in enumerate(rng.uniform(0.5, 5, rows))]),
            "petal_length": pa.array(rng.integers(-2, 9, rows)),  # integers, some out of range
            "petal_width": pa.array(rng.uniform(0.1, 2.5, rows), type=pa.float32()),
        }
    )
    pd.testing.assert_frame_equal(
        score_arrow(batch, predictor, "v").to_pandas(), score_batch(batch.to_pandas(), predictor, "v")
    )
    booleans = batch.set_column(0, "sepal_length", pa.array([True] * rows))
    scored = score_arrow(booleans, predictor, "v").to_pandas()
    pd.testing.assert_frame_equal(scored, score_batch(booleans.to_pandas(), predictor, "v"))
    assert scored["error"].str.startswith("sepal_length: not a number").all()
