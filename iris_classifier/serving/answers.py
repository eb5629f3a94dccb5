"""The native API's answers, built in one place: a Prediction per flower, /classify's with its request id, sent
as JSON with the request id in the X-Request-ID header.

A request's id is the one its flowers' lines in the prediction log carry (bentoml_compat.request_id); a
/classify_batch answer's rows are addressed by (that id, their index in the request).
"""

from __future__ import annotations

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

        Built column-wise instead of as a dict per flower: each probability column is encoded by one orjson
        call and split at its commas (a float64 is written as the same Python float would be), and the JSON
        around the numbers is shared bytes. For 10,000 flowers that is ~5x faster, and no object per flower
        is left for the garbage collector to walk (30,000 dicts per batch in flight, before).
        """
        count = len(species)
        if not count:
            return json_answer([], request_id)
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
        pieces[-1] = pieces[-1][:-1]  # no comma after the last flower
        return Response(
            b"[" + b"".join(pieces) + b"]", media_type="application/json", headers={REQUEST_ID_HEADER: request_id}
        )


def json_answer(payload: Any, request_id: str) -> Response:
    """The payload as JSON (orjson), with the request's id in its header."""
    return Response(orjson.dumps(payload), media_type="application/json", headers={REQUEST_ID_HEADER: request_id})
