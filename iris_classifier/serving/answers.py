"""The native API's answers, built in one place: a Prediction per flower, /classify's with its request id, sent
as JSON with the request id in the X-Request-ID header.

A request's id is the one its flowers' lines in the prediction log carry (bentoml_compat.request_id); a
/classify_batch answer's rows are addressed by (that id, their index in the request).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import Field, RootModel
from starlette.responses import Response

from iris_classifier.domain.schema import SPECIES, Prediction

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_DESCRIPTION = (
    "the request's id, as the prediction log records it for each of its flowers (a batch's rows are addressed "
    "by this id and their index); BentoML's X-BentoML-Request-ID header is the same number in hex"
)
# The header as an OpenAPI response header object.
REQUEST_ID_HEADER_DOC: dict[str, Any] = {"description": REQUEST_ID_DESCRIPTION, "schema": {"type": "string"}}


class Classification(Prediction):
    """What /classify answers: the flower's prediction, and the request's id."""

    request_id: str = Field(description=REQUEST_ID_DESCRIPTION, examples=["12086514573392315372"])


class Predictions(RootModel[list[Prediction]]):
    """What /classify_batch answers: one prediction per flower, in request order (the request's id is in its
    X-Request-ID header)."""


class Answers:
    """The answers of one served model."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version
        # A batch answer's JSON around each flower's numbers, as orjson writes a Prediction (keys in this order).
        first, second, third = (orjson.dumps(name) for name in SPECIES)
        self._opening = {
            name: b'{"species":' + orjson.dumps(name) + b',"probabilities":{' + first + b":" for name in SPECIES
        }
        self._between = (b"," + second + b":", b"," + third + b":")
        self._closing = b'},"model_version":' + orjson.dumps(model_version) + b',"warnings":'
        self._fragments: dict[tuple[str, bytes], bytes] = {}  # (species, probability row's bytes) -> its JSON

    def predictions(
        self, species: Sequence[str], probabilities: Sequence[Sequence[float]], warnings: Sequence[list[str]]
    ) -> list[dict[str, Any]]:
        """One Prediction per flower: species, probabilities in SPECIES order, out-of-range measurements.

        A dict literal per flower, no call: a call and a dict(zip()) per flower made a 10,000-flower batch ~3x slower.
        """
        first, second, third = SPECIES
        version = self.model_version
        return [
            {
                "species": name,
                "probabilities": {first: p1, second: p2, third: p3},
                "model_version": version,
                "warnings": flower_warnings,
            }
            for name, (p1, p2, p3), flower_warnings in zip(species, probabilities, warnings, strict=True)
        ]

    def classification(
        self, species: str, probabilities: Sequence[float], warnings: list[str], request_id: str
    ) -> Response:
        """/classify's answer: a Classification."""
        (answer,) = self.predictions([species], [probabilities], [warnings])
        answer["request_id"] = request_id
        return json_answer(answer, request_id)

    def batch(
        self, species: Sequence[str], probabilities: np.ndarray, warnings: Sequence[list[str]], request_id: str
    ) -> Response:
        """/classify_batch's answer: Predictions, the same bytes as `predictions` serialized by orjson.

        A forest answers a batch with few distinct probability rows (each cell of its lookup table has fixed
        votes), so the rows are grouped by their exact bits and each group's JSON, up to its warnings, is built
        once (and kept for the next requests): the answer is then a join of those pieces, one per flower.
        Rows with few repeats are built column-wise instead (`_columns`).
        """
        count = len(species)
        if not count:
            return json_answer([], request_id)
        groups = equal_rows(probabilities)
        pieces = self._columns(species, probabilities, warnings) if groups is None else self._grouped(
            species, probabilities, warnings, *groups
        )  # fmt: skip
        pieces[-1] = pieces[-1][:-1]  # no comma after the last flower
        return Response(
            b"[" + b"".join(pieces) + b"]", media_type="application/json", headers={REQUEST_ID_HEADER: request_id}
        )

    def _fragment(self, name: str, row: np.ndarray) -> bytes:
        """A flower's JSON up to its warnings, for one species and one probability row (float64 as orjson
        writes a Python float)."""
        first, second, third = (orjson.dumps(value) for value in row.tolist())
        return self._opening[name] + first + self._between[0] + second + self._between[1] + third + self._closing

    def _grouped(
        self,
        species: Sequence[str],
        probabilities: np.ndarray,
        warnings: Sequence[list[str]],
        first: np.ndarray,
        inverse: np.ndarray,
    ) -> list[bytes]:
        cache = self._fragments
        if len(cache) > MAX_FRAGMENTS:
            cache.clear()
        fragments = []
        for row in first.tolist():
            key = (species[row], probabilities[row].tobytes())
            fragment = cache.get(key)
            if fragment is None:
                fragment = cache[key] = self._fragment(species[row], probabilities[row])
            fragments.append(fragment)
        in_range = np.array([fragment + b"[]}," for fragment in fragments], dtype=object)
        pieces: list[bytes] = in_range[inverse].tolist()
        for row in itertools.compress(range(len(pieces)), warnings):  # the flowers with warnings
            pieces[row] = fragments[inverse[row]] + orjson.dumps(warnings[row]) + b"},"
        return pieces

    def _columns(self, species: Sequence[str], probabilities: np.ndarray, warnings: Sequence[list[str]]) -> list[bytes]:
        """Each probability column encoded by one orjson call and split at its commas (a float64 is written as
        the same Python float would be); the JSON around the numbers is shared bytes."""
        count = len(species)
        pieces: list[bytes] = [b""] * (7 * count)
        opening = self._opening
        pieces[0::7] = [opening[name] for name in species]
        for column in range(3):
            values = orjson.dumps(np.ascontiguousarray(probabilities[:, column]), option=orjson.OPT_SERIALIZE_NUMPY)
            pieces[1 + 2 * column :: 7] = values[1:-1].split(b",")
        pieces[2::7] = [self._between[0]] * count
        pieces[4::7] = [self._between[1]] * count
        # model version, warnings and the comma after the flower: one piece, the same for every flower in range
        closing, in_range = self._closing, self._closing + b"[]},"
        pieces[6::7] = [closing + orjson.dumps(flower) + b"}," if flower else in_range for flower in warnings]
        return pieces


# Probability rows kept as JSON pieces between requests (a forest has a few thousand distinct ones at most).
MAX_FRAGMENTS = 100_000
# Odd 64-bit multipliers mixing a row's three float64 bit patterns into one key to group by.
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))


def equal_rows(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows grouped by their exact bits: (the first row of each group, each row's group), or None when the
    rows repeat too little for grouping to pay (or the array is not (N, 3) float64)."""
    if probabilities.ndim != 2 or probabilities.shape[1] != 3 or probabilities.dtype != np.float64:
        return None
    bits = np.ascontiguousarray(probabilities).view(np.uint64)
    with np.errstate(over="ignore"):
        key = bits[:, 0] ^ (bits[:, 1] * _MIX[0]) ^ (bits[:, 2] * _MIX[1])
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if len(first) * 4 > len(key):
        return None
    inverse = inverse.reshape(-1)
    if not (bits[first][inverse] == bits).all():  # two different rows with one key: never merged
        return None
    return first, inverse


def json_answer(payload: Any, request_id: str) -> Response:
    """The payload as JSON (orjson), with the request's id in its header."""
    return Response(orjson.dumps(payload), media_type="application/json", headers={REQUEST_ID_HEADER: request_id})
