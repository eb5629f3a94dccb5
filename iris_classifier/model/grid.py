"""A tree ensemble compiled to a lookup table: exact, and ~10x faster than walking the trees on big batches.

A forest's answer for a row depends only on which side of each split threshold the row's features fall.
Four features, each cut by the thresholds the trees use on it (the iris forest: 15-27 per feature, as
retrained), cut the space into a grid of cells (the iris forest: 270,000-300,000) inside which every row
gets the same votes. So the votes of every cell are computed once, at load (the service: in a background
thread), by the ONNX session itself on one representative row per cell, and a batch is then answered by
four `searchsorted` calls and one `take`: the same float32 votes, bit for bit, that the session gives for
every row of the cell (the trees compare float32 features with float32 thresholds, as the session does).

`grid_json` reads the thresholds out of the converted model at training time (it needs the `onnx`
package, which the serving image does not have); the store entry keeps them in grid.json beside
model.onnx. A model that is not one tree ensemble (logistic regression), or whose grid would be too big,
has no grid.json and is answered by the session.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# 1,000,000 cells x 3 float32 votes = 12 MB per worker, built in ~2 s; a bigger grid stays with the session.
MAX_CELLS = 1_000_000
# On which side of a threshold a value equal to it falls: BRANCH_LEQ sends x <= t to the true branch.
MODES = ("BRANCH_LEQ", "BRANCH_LT")
# Up to this many rows a call finds each row's cell with bisect on plain floats, not with numpy.
FEW_ROWS = 8


def grid_json(onnx_bytes: bytes, n_features: int, *, max_cells: int = MAX_CELLS) -> bytes | None:
    """The per-feature float32 thresholds of a one-node tree-ensemble model, or None when it has no grid."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    nodes = list(model.graph.node)
    if len(nodes) != 1 or nodes[0].op_type != "TreeEnsembleClassifier":
        return None
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in nodes[0].attribute}
    if "nodes_values" not in attributes:  # thresholds as a double tensor (a float64 model): not this grid
        return None
    modes = {mode.decode() for mode in attributes["nodes_modes"]} - {"LEAF"}
    if len(modes) != 1 or not modes <= set(MODES):
        return None
    thresholds: list[set[float]] = [set() for _ in range(n_features)]
    for mode, feature, value in zip(
        attributes["nodes_modes"], attributes["nodes_featureids"], attributes["nodes_values"], strict=True
    ):
        if mode.decode() != "LEAF":
            thresholds[feature].add(float(np.float32(value)))
    grid = {"mode": modes.pop(), "thresholds": [sorted(values) for values in thresholds]}
    if cells(grid["thresholds"]) > max_cells:
        return None
    return json.dumps(grid).encode()


def cells(thresholds: list[list[float]]) -> int:
    return int(np.prod([len(values) + 1 for values in thresholds]))


@dataclass(frozen=True)
class VoteGrid:
    """The votes of every cell, and how to find a row's cell."""

    thresholds: tuple[np.ndarray, ...]  # per feature, sorted float32
    side: str  # searchsorted's side: a value's bin is how many thresholds it has passed
    strides: np.ndarray  # int64, a cell's index is sum(bin * stride)
    table: np.ndarray  # (cells, classes) float32 votes

    def __post_init__(self) -> None:
        # Plain-float copies for votes_one: bisect on a list beats four numpy calls on one row.
        object.__setattr__(self, "_lists", [values.tolist() for values in self.thresholds])
        object.__setattr__(self, "_strides", self.strides.tolist())
        object.__setattr__(self, "_bisect", bisect_left if self.side == "left" else bisect_right)

    @property
    def cells(self) -> int:
        return len(self.table)

    @classmethod
    def build(cls, grid: dict[str, Any], votes: Callable[[np.ndarray], np.ndarray]) -> VoteGrid:
        """Ask `votes` (float32 scaled rows -> float32 votes) once per cell, for a row inside that cell."""
        thresholds = tuple(np.asarray(values, dtype=np.float32) for values in grid["thresholds"])
        leq = grid["mode"] == "BRANCH_LEQ"
        # With x <= t true, bin b holds t[b-1] < x <= t[b]: t[b] is inside it, and above the last threshold
        # the next float32 up. With x < t true, bin b holds t[b-1] <= x < t[b]: t[b-1] is inside it, and
        # below the first threshold the next float32 down.
        representatives = []
        for values in thresholds:
            if not len(values):  # a feature no tree splits on: one bin, any value
                inside = np.zeros(1, dtype=np.float32)
            elif leq:
                inside = np.append(values, np.nextafter(values[-1:], np.float32(np.inf)))
            else:
                inside = np.insert(values, 0, np.nextafter(values[:1], np.float32(-np.inf)))
            representatives.append(inside.astype(np.float32))
        sizes = [len(inside) for inside in representatives]
        strides = np.array([int(np.prod(sizes[i + 1 :])) for i in range(len(sizes))], dtype=np.int64)
        mesh = np.meshgrid(*representatives, indexing="ij")  # row-major: cell index = sum(bin * stride)
        rows = np.stack([axis.ravel() for axis in mesh], axis=1)
        del mesh
        table = np.concatenate([votes(chunk) for chunk in np.array_split(rows, max(1, len(rows) // 50_000))])
        return cls(thresholds, "left" if leq else "right", strides, np.ascontiguousarray(table, dtype=np.float32))

    def votes(self, scaled: np.ndarray) -> np.ndarray:
        """Float32 votes for float32 scaled rows, shape (n, classes): the session's, bit for bit."""
        if len(scaled) <= FEW_ROWS:  # a few rows: bisect on plain floats beats four numpy calls
            return self.table[[self._cell(row) for row in scaled.tolist()]]
        index = np.zeros(len(scaled), dtype=np.int64)
        for feature, (values, stride) in enumerate(zip(self.thresholds, self.strides, strict=True)):
            index += np.searchsorted(values, scaled[:, feature], side=self.side) * stride
        return self.table[index]

    def votes_one(self, scaled: list[float]) -> list[float]:
        """`votes` for one row of float64 scaled values, rounded to float32 first as the session's input is."""
        return self.table[self._cell(array("f", scaled).tolist())].tolist()

    def _cell(self, row: list[float]) -> int:
        index = 0
        for value, values, stride in zip(row, self._lists, self._strides, strict=True):
            index += self._bisect(values, value) * stride
        return index
