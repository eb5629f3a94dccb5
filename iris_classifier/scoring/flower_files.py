"""Files of made-up flowers for trying and measuring the scoring job: training flowers jittered, with an id
column, and bad rows (empty, non-numeric, non-finite, out of range) at every `bad_every`-th position.

    python -m iris_classifier.scoring.flower_files OUT.csv --rows 1000000 [--bad-every 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from iris_classifier.domain.schema import FEATURES
from iris_classifier.project.paths import TRAIN_CSV

# What a bad row holds in one measurement, and the rule it breaks (domain/measurements.py's names).
BAD_VALUES: tuple[tuple[str, str], ...] = (
    ("", "missing"),
    ("wide", "not_a_number"),
    ("inf", "not_finite"),
    ("nan", "not_finite"),
    ("0", "out_of_range"),
    ("-1.5", "out_of_range"),
    ("60", "out_of_range"),
)
ID_COLUMN = "flower_id"


def flowers(rows: int, *, bad_every: int = 0, seed: int = 0, train_csv: Path = TRAIN_CSV) -> pd.DataFrame:
    """`rows` flowers as a CSV gives them (every column text): flower_id, then FEATURES in cm (one decimal).

    Row i (from 0) is bad when bad_every and i % bad_every == bad_every - 1: one measurement, cycling through
    FEATURES, holds one of BAD_VALUES, cycling too.
    """
    rng = np.random.default_rng(seed)
    train = pd.read_csv(train_csv)[list(FEATURES)].to_numpy()
    picked = train[rng.integers(0, len(train), rows)] + rng.normal(0.0, 0.1, (rows, len(FEATURES)))
    values = np.clip(picked, 0.1, None).round(1)
    table = pd.DataFrame({ID_COLUMN: np.arange(rows).astype(str)})
    for column, name in enumerate(FEATURES):
        table[name] = np.char.mod("%.1f", values[:, column])
    if bad_every:
        for number, row in enumerate(range(bad_every - 1, rows, bad_every)):
            table.iat[row, 1 + number % len(FEATURES)] = BAD_VALUES[number % len(BAD_VALUES)][0]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the CSV to write")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-every", type=int, default=1000, help="one bad row in this many (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = flowers(args.rows, bad_every=args.bad_every, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    bad = len(range(args.bad_every - 1, args.rows, args.bad_every)) if args.bad_every else 0
    print(f"flowers: {args.rows:,} rows ({bad:,} bad) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
