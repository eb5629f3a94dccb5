"""The `load` stage: the raw table's shape and content."""

from __future__ import annotations

import pandas as pd

from iris_classifier.data.table import validate
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.project.paths import RAW_CSV
from stages.load import load


def test_load_data(pipeline_ready):
    frame = pd.read_csv(RAW_CSV)
    assert len(frame) == 150
    assert list(frame.columns) == [*FEATURES, "species"]
    assert all(pd.api.types.is_float_dtype(frame[c]) for c in FEATURES)
    assert frame[list(FEATURES)].notna().all().all()
    assert frame["species"].value_counts().to_dict() == {name: 50 for name in SPECIES}
    # Fisher's first flower, as printed in the 1936 paper.
    assert frame.iloc[0].tolist() == [5.1, 3.5, 1.4, 0.2, "setosa"]


def test_load_writes_what_it_validated(tmp_path):
    out = tmp_path / "iris.csv"
    rows = load(source="sklearn", output=out)
    written = pd.read_csv(out)
    assert rows == 150
    pd.testing.assert_frame_equal(written, validate(written))
    assert written["petal_length"].between(1.0, 6.9).all()


def test_load_accepts_a_csv_source_with_the_same_schema(tmp_path):
    source = tmp_path / "source.csv"
    load(source="sklearn", output=source)
    out = tmp_path / "copy.csv"
    assert load(source=str(source), output=out) == 150
    assert out.read_bytes() == source.read_bytes()
