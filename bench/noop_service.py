"""The framework's ceiling: the same request schema and server settings as service.py, no model call."""

from __future__ import annotations

import bentoml

from iris_classifier.schema import SPECIES, Flower, Prediction
from iris_classifier.service_support import freeze_heap, server_settings

ANSWER = Prediction(species=SPECIES[0], probabilities=dict.fromkeys(SPECIES, 1 / 3), model_version="noop", warnings=[])


@bentoml.service(name="iris_noop", **server_settings())
class NoopClassifier:
    def __init__(self) -> None:
        freeze_heap()  # the same server setting as service.py

    @bentoml.api(input_spec=Flower, output_spec=Prediction)
    async def classify(self, **flower: float) -> Prediction:
        return ANSWER
