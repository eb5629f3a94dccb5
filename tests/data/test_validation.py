"""Bad raw data is refused with a message naming the column, the rows and the rule."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from iris_classifier.data.table import DataValidationError, bundled_iris, validate
from tests.conftest import ROOT


def broken(change) -> pd.DataFrame:
    frame = bundled_iris()
    change(frame)
    return frame


CASES = {
    "missing column": (lambda f: f.drop(columns=["petal_width"], inplace=True), ["missing column", "petal_width"]),
    "negative value": (lambda f: f.loc.__setitem__((7, "sepal_width"), -1.0), ["sepal_width", "row(s) 7", "> 0"]),
    "zero value": (lambda f: f.loc.__setitem__((3, "petal_length"), 0.0), ["petal_length", "row(s) 3", "> 0"]),
    "unknown species": (
        lambda f: f.loc.__setitem__((12, "species"), "daisy"),
        ["species", "'daisy'", "row(s) 12", "setosa, versicolor, virginica"],
    ),
    "missing value": (lambda f: f.loc.__setitem__((5, "sepal_length"), None), ["sepal_length", "missing value", "5"]),
    "text in a number column": (
        lambda f: f.__setitem__("petal_width", f["petal_width"].astype(object).where(f.index != 9, "wide")),
        ["petal_width", "non-numeric", "row(s) 9"],
    ),
    "infinite value": (
        lambda f: f.loc.__setitem__((2, "sepal_length"), float("inf")),
        ["sepal_length", "finite", "row(s) 2"],
    ),
    "a species absent": (lambda f: f.drop(index=range(50), inplace=True), ["no rows of species setosa"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_table_is_refused_naming_column_rows_and_rule(case):
    change, expected = CASES[case]
    with pytest.raises(DataValidationError) as error:
        validate(broken(change))
    for fragment in expected:
        assert fragment in str(error.value)


def test_many_bad_rows_are_listed_briefly():
    frame = bundled_iris()
    frame.loc[0:19, "sepal_length"] = -1
    with pytest.raises(DataValidationError, match=r"row\(s\) 0, 1, 2, 3, 4 and 15 more"):
        validate(frame)


def test_load_stage_refuses_a_bad_csv_and_writes_nothing(tmp_path):
    source = tmp_path / "bad.csv"
    broken(lambda f: f.loc.__setitem__((42, "petal_length"), -3.0)).to_csv(source, index=False)
    out = tmp_path / "raw.csv"
    result = subprocess.run(
        [sys.executable, "-m", "stages.load", "--source", str(source), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "petal_length" in result.stderr and "row(s) 42" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
