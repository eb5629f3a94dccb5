"""The typed API's measurement rules applied to the columns of a table at once: values in cm, and each row's errors.

The rules are read from `Measurement` itself (schema.py), so a table row is accepted exactly when the typed API
accepts the same numbers: present, a number, finite, > 0 and <= MAX_MEASUREMENT_CM. A table holds numbers as
numbers (Parquet) or as text (CSV): text is read as Python's `float()` reads it, which gives the same float64 as
a JSON parser for every JSON number. An empty cell (null, or NaN in a float column: pandas' marker for a
missing value) is "missing".
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import annotated_types
import numpy as np
import pandas as pd

from iris_classifier.domain.schema import FEATURES, Measurement


def _bounds() -> tuple[float, float]:
    """(exclusive lower, inclusive upper) bound in cm, as Measurement declares them."""
    (field,) = typing.get_args(Measurement)[1:]
    above = next(rule.gt for rule in field.metadata if isinstance(rule, annotated_types.Gt))
    at_most = next(rule.le for rule in field.metadata if isinstance(rule, annotated_types.Le))
    return float(above), float(at_most)


ABOVE_CM, AT_MOST_CM = _bounds()

# The rules, in the order they are checked; a value breaks at most one. The names match pydantic's error types:
# missing <- missing; not_a_number <- float_type, float_parsing; not_finite <- finite_number;
# out_of_range <- greater_than, less_than_equal.
RULES: dict[str, str] = {
    "missing": "missing (a measurement in cm is required)",
    "not_a_number": "not a number",
    "not_finite": "not a finite number",
    "out_of_range": f"out of range (must be > {ABOVE_CM:g} and <= {AT_MOST_CM:g} cm)",
}
_RULE_CODES = {name: code for code, name in enumerate(RULES, start=1)}  # 0: the value is valid


@dataclass(frozen=True)
class CheckedMeasurements:
    """A table's measurements: `values` (n, 4) float64 cm in FEATURES order (NaN where a value broke a rule),
    `broken` (n, 4) the rule each value broke (0: none), and `raw` the table's columns as given."""

    values: np.ndarray
    broken: np.ndarray
    raw: pd.DataFrame

    @property
    def valid(self) -> np.ndarray:
        """Rows whose four values keep every rule."""
        return ~self.broken.any(axis=1)

    def errors(self) -> np.ndarray:
        """Per row, '' when valid, else each broken value as `field: rule (value)`, joined by '; '."""
        messages = np.full(len(self.values), "", dtype=object)
        rules = list(RULES)
        for row in np.flatnonzero(~self.valid).tolist():
            parts = []
            for column, code in enumerate(self.broken[row].tolist()):
                if code:
                    name = FEATURES[column]
                    rule = rules[code - 1]
                    shown = "" if rule == "missing" else f": got {self.raw[name].iloc[row]!r}"
                    parts.append(f"{name}: {RULES[rule]}{shown}")
            messages[row] = "; ".join(parts)
        return messages

    def rule_names(self, row: int) -> dict[str, str]:
        """The broken rules of one row: {field: rule name}."""
        rules = list(RULES)
        return {FEATURES[i]: rules[code - 1] for i, code in enumerate(self.broken[row].tolist()) if code}


def check_measurements(table: pd.DataFrame) -> CheckedMeasurements:
    """The FEATURES columns of `table` (numbers, or text as a CSV gives them) checked against Measurement's rules."""
    values = np.empty((len(table), len(FEATURES)), dtype=np.float64)
    broken = np.zeros((len(table), len(FEATURES)), dtype=np.int8)
    for column, name in enumerate(FEATURES):
        values[:, column], broken[:, column] = _check_column(table[name])
    return CheckedMeasurements(values=values, broken=broken, raw=table[list(FEATURES)])


def _check_column(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if pd.api.types.is_bool_dtype(series.dtype):  # a boolean is not a measurement (pydantic's strict mode)
        return np.full(len(series), np.nan), np.full(len(series), _RULE_CODES["not_a_number"], dtype=np.int8)
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        code = np.where(np.isnan(values), _RULE_CODES["missing"], 0).astype(np.int8)
    else:
        values, code = _parse(series.to_numpy(dtype=object))
    code = np.where((code == 0) & ~np.isfinite(values), _RULE_CODES["not_finite"], code)
    # NaN compares False: only finite values reach this rule.
    outside = ~((values > ABOVE_CM) & (values <= AT_MOST_CM))
    code = np.where((code == 0) & outside, _RULE_CODES["out_of_range"], code).astype(np.int8)
    return np.where(code == 0, values, np.nan), code


def _parse(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Text or Python objects -> float64 and the rule each cell broke (missing, not a number) or 0."""
    kind = pd.api.types.infer_dtype(cells, skipna=False)
    if kind in ("string", "floating", "integer", "mixed-integer-float"):
        try:  # the common case, every cell numeric text or a number: float() per cell, in C
            values = cells.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            # "nan" text is a value given (not finite); a NaN object in a column of numbers is pandas' empty cell.
            missing = np.isnan(values) if kind != "string" else np.zeros(len(cells), dtype=bool)
            return values, np.where(missing, _RULE_CODES["missing"], 0).astype(np.int8)
    values = np.full(len(cells), np.nan)
    code = np.zeros(len(cells), dtype=np.int8)
    for i, cell in enumerate(cells.tolist()):
        if (
            cell is None
            or cell is pd.NA
            or (isinstance(cell, str) and not cell.strip())
            or (isinstance(cell, float) and cell != cell)
        ):
            code[i] = _RULE_CODES["missing"]
        elif isinstance(cell, bool | np.bool_) or not isinstance(cell, str | int | float | np.number):
            code[i] = _RULE_CODES["not_a_number"]
        else:
            try:
                values[i] = float(cell)
            except (ValueError, OverflowError):
                code[i] = _RULE_CODES["not_a_number"]
    return values, code
