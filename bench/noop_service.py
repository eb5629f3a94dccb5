"""The framework's ceiling: the same request schema and server settings as service.py, no model call."""

from __future__ import annotations

import bentoml
from starlette.responses import Response

from iris_classifier.domain.schema import SPECIES, Flower, Prediction
from iris_classifier.serving import bentoml_compat
from iris_classifier.serving.settings import freeze_heap, server_settings

# Serialized once: the cheapest answer the framework can send (service.py serializes each answer with orjson).
ANSWER = Prediction(species=SPECIES[0], probabilities=dict.fromkeys(SPECIES, 1 / 3), model_version="noop", warnings=[])
ANSWER_JSON = ANSWER.model_dump_json().encode()

bentoml_compat.install_response_start_timeout()  # as service.py does


@bentoml.service(name="iris_noop", **server_settings())
class NoopClassifier:
    def __init__(self) -> None:
        freeze_heap()  # the same server setting as service.py

    @bentoml.api(input_spec=Flower, output_spec=Prediction)
    async def classify(self, **flower: float) -> Prediction:
        return Response(ANSWER_JSON, media_type="application/json")  # type: ignore[return-value]
