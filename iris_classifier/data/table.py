"""Reading, validating and writing the iris measurements table."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pandas as pd

from iris_classifier.domain.schema import FEATURES, SPECIES, TARGET

COLUMNS = [*FEATURES, TARGET]


class DataValidationError(ValueError):
    """The table breaks the schema; the message names the column, the rows and the rule."""


def bundled_iris() -> pd.DataFrame:
    """Fisher's iris as shipped inside scikit-learn (no network)."""
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    frame = bunch.frame.rename(columns=dict(zip(bunch.feature_names, FEATURES, strict=True)))
    frame[TARGET] = [bunch.target_names[i] for i in bunch.frame["target"]]
    return frame[COLUMNS]


def read_source(source: str) -> pd.DataFrame:
    """`sklearn` for the bundled copy, else a CSV path or URL with the project's columns."""
    if source == "sklearn":
        return bundled_iris()
    return pd.read_csv(source)


def _rows(mask: pd.Series, limit: int = 5) -> str:
    rows = [str(i) for i in mask[mask].index[:limit]]
    more = int(mask.sum()) - len(rows)
    return ", ".join(rows) + (f" and {more} more" if more > 0 else "")


def validate(frame: pd.DataFrame, *, every_species: bool = True) -> pd.DataFrame:
    """Return the table with the project's columns in order, or raise DataValidationError.

    Rows are numbered from 0 as in the data (the CSV line is the row number + 2). A table of labelled
    feedback (`every_species=False`) may hold any species, or none.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"missing column(s) {', '.join(missing)}: the table must have columns {', '.join(COLUMNS)}"
        )
    frame = frame[COLUMNS].copy()
    for column in COLUMNS:
        empty = frame[column].isna()
        if empty.any():
            raise DataValidationError(f"column {column}: missing value in row(s) {_rows(empty)}")
    for column in FEATURES:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        not_numeric = numbers.isna()
        if not_numeric.any():
            raise DataValidationError(
                f"column {column}: non-numeric value in row(s) {_rows(not_numeric)}; measurements are numbers in cm"
            )
        not_positive = ~(numbers > 0) | ~numbers.abs().lt(float("inf"))
        if not_positive.any():
            raise DataValidationError(
                f"column {column}: value must be a finite number > 0 cm, broken in row(s) {_rows(not_positive)}"
            )
        frame[column] = numbers.astype("float64")
    frame[TARGET] = frame[TARGET].astype(str).str.strip()
    unknown = ~frame[TARGET].isin(SPECIES)
    if unknown.any():
        names = sorted(set(frame.loc[unknown, TARGET]))
        raise DataValidationError(
            f"column {TARGET}: unknown species {', '.join(map(repr, names))} in row(s) {_rows(unknown)}; "
            f"known species are {', '.join(SPECIES)}"
        )
    absent = [s for s in SPECIES if s not in set(frame[TARGET])]
    if absent and every_species:
        raise DataValidationError(f"column {TARGET}: no rows of species {', '.join(absent)}; all three are needed")
    return frame.reset_index(drop=True)


def _write_atomic(path: Path, write: Callable[[TextIO], object]) -> None:
    """Write via a temporary file in the same folder, so a failed write never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    _write_atomic(path, lambda out: frame.to_csv(out, index=False, float_format="%.10g", lineterminator="\n"))


def write_text_atomic(text: str, path: Path) -> None:
    _write_atomic(path, lambda out: out.write(text))


def read_table(path: Path) -> pd.DataFrame:
    """Read a table the pipeline wrote; say what to run when it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make pipeline` (or `dvc repro`) first")
    return pd.read_csv(path)


def file_md5(path: Path) -> str:
    """The md5 DVC records for a file, so model metadata names the exact training data."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
