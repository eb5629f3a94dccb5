"""Stage `prepare`: the standardized table (mean 0, std 1) and a seeded, stratified train/test split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from iris_classifier.data.table import read_table, validate, write_csv_atomic
from iris_classifier.domain.schema import FEATURES, TARGET
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import RAW_CSV, STANDARDIZED_CSV, TEST_CSV, TRAIN_CSV


def standardize(frame: pd.DataFrame) -> pd.DataFrame:
    """Each measurement rescaled to mean 0 and (population) std 1; species kept as is."""
    out = frame.copy()
    values = frame[list(FEATURES)]
    out[list(FEATURES)] = (values - values.mean()) / values.std(ddof=0)
    return out


def split(frame: pd.DataFrame, *, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified by species; the same seed always gives the same rows."""
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def prepare(
    *,
    test_size: float,
    seed: int,
    raw: Path = RAW_CSV,
    standardized: Path = STANDARDIZED_CSV,
    train: Path = TRAIN_CSV,
    test: Path = TEST_CSV,
) -> None:
    frame = validate(read_table(raw))
    write_csv_atomic(standardize(frame), standardized)
    train_rows, test_rows = split(frame, test_size=test_size, seed=seed)
    write_csv_atomic(train_rows, train)
    write_csv_atomic(test_rows, test)
    print(f"prepare: {len(train_rows)} train / {len(test_rows)} test rows, standardized table -> {standardized}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    params = load_params("prepare")
    try:
        prepare(test_size=params["test_size"], seed=params["seed"])
    except (OSError, ValueError) as error:
        print(f"prepare: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
