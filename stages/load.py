"""Stage `load`: write the raw iris table (validated) to data/raw/iris.csv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iris_classifier.data.table import DataValidationError, read_source, validate, write_csv_atomic
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import RAW_CSV


def load(*, source: str, output: Path = RAW_CSV) -> int:
    """Validate the source table and write it; returns the row count."""
    frame = validate(read_source(source))
    write_csv_atomic(frame, output)
    return len(frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=None, help="overrides params.yaml load.source")
    parser.add_argument("--output", type=Path, default=RAW_CSV)
    args = parser.parse_args(argv)
    source = args.source or load_params("load")["source"]
    try:
        rows = load(source=source, output=args.output)
    except DataValidationError as error:
        print(f"load: {source} refused: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"load: cannot read {source}: {error}", file=sys.stderr)
        return 1
    print(f"load: {rows} rows from {source} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
