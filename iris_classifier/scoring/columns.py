"""The columns of a scored file: what the input must have, what the job adds. Light to import (no pandas), so
`make score` checks a local input's header before anything heavy starts."""

from __future__ import annotations

from iris_classifier.domain.schema import FEATURES, SPECIES

PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"probability_{name}" for name in SPECIES)
# What the job adds after the input's own columns, in this order.
OUTPUT_COLUMNS: tuple[str, ...] = ("species", *PROBABILITY_COLUMNS, "model_version", "error")


class InputColumnsError(ValueError):
    """The input lacks a measurement column, or has a column the output would overwrite; the message names it."""


def check_input_columns(columns: list[str]) -> None:
    """Raise InputColumnsError unless every FEATURES column is present and no column is named like an output one."""
    missing = [name for name in FEATURES if name not in columns]
    if missing:
        raise InputColumnsError(
            f"input: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(needed: {', '.join(FEATURES)}; found: {', '.join(columns) or 'none'})"
        )
    clashing = [name for name in OUTPUT_COLUMNS if name in columns]
    if clashing:
        raise InputColumnsError(
            f"input: column{'s' if len(clashing) > 1 else ''} {', '.join(clashing)} would be overwritten by the "
            f"output's ({', '.join(OUTPUT_COLUMNS)}); rename {'them' if len(clashing) > 1 else 'it'} in the input"
        )
