"""The naive shape users start from (BentoML's scikit-learn example): the sklearn pipeline per request."""

from __future__ import annotations

from pathlib import Path

import bentoml
import joblib
import numpy as np

from iris_classifier.domain.schema import FEATURES, SPECIES, Flower, Prediction
from iris_classifier.model.files import PIPELINE_FILE
from iris_classifier.model.store import model_tag_to_serve
from iris_classifier.serving import bentoml_compat
from iris_classifier.serving.settings import freeze_heap, server_settings

bentoml_compat.install_response_start_timeout()  # as service.py does


@bentoml.service(name="iris_naive", **server_settings())
class NaiveClassifier:
    model = bentoml.models.BentoModel(model_tag_to_serve())

    def __init__(self) -> None:
        self.pipeline = joblib.load(Path(self.model.path) / PIPELINE_FILE)
        freeze_heap()  # the same server setting as service.py

    @bentoml.api(input_spec=Flower, output_spec=Prediction)
    def classify(self, **flower: float) -> Prediction:
        probabilities = self.pipeline.predict_proba(np.array([[flower[name] for name in FEATURES]]))[0]
        return Prediction(
            species=SPECIES[int(probabilities.argmax())],
            probabilities=dict(zip(SPECIES, probabilities.tolist(), strict=True)),
            model_version=str(self.model.tag),
        )
