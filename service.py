"""The BentoML service: a typed HTTP API over the model the pipeline stored."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import orjson
from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Mount

from demo.app import build_demo
from iris_classifier.model import Predictor
from iris_classifier.schema import (
    EXAMPLE_FLOWER,
    FEATURES,
    MEASUREMENTS_IN,
    SPECIES,
    Flower,
    FlowerFields,
    FlowerList,
    Prediction,
    well_formed_batch,
)
from iris_classifier.service_support import (
    MAX_BODY_BYTES,
    OpenAPI30Fixes,
    RequestGuard,
    freeze_heap,
    model_tag_to_serve,
    server_settings,
    stored_model_metadata,
)

MODEL_TAG = model_tag_to_serve()
MODEL_CARD = stored_model_metadata(MODEL_TAG)  # refuses to start, saying what to run, when the model is missing

predictions_total = Counter(
    name="iris_predictions_total",
    documentation="Flowers classified, by predicted species",
    labelnames=["species"],
)
model_call_seconds = Histogram(
    name="iris_model_call_seconds",
    documentation="Time spent in the model call (one request, any number of flowers)",
    buckets=(5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0),
)


# Plain GET routes beside the typed APIs; mounted at "/", it only answers the paths it defines.
class JSONBytes(Response):
    media_type = "application/json"


web_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


class FlowerBatch(bentoml.IODescriptor):
    flowers: FlowerList

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> FlowerBatch:
        """A body that certainly passes takes the fast path; pydantic judges (and explains) all others."""
        data = json_data.encode() if isinstance(json_data, str) else bytes(json_data)
        flowers = well_formed_batch(data)
        if flowers is None:
            return super().model_validate_json(json_data, **kwargs)
        return cls.model_construct(flowers=flowers)


@bentoml.service(name="iris_classifier", **server_settings())
@bentoml.gradio.mount_gradio_app(
    build_demo(api_url=None, ranges=MODEL_CARD["feature_ranges_cm"], defaults=MODEL_CARD["feature_medians_cm"]),
    path="/ui",
)
@bentoml.asgi_app(web_app, path="/")
class IrisClassifier:
    """Classifies iris flowers from four measurements in cm."""

    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.predictor = Predictor.from_dir(Path(self.model.path))
        metadata = self.model.info.metadata
        self.ranges: dict[str, list[float]] = metadata["feature_ranges_cm"]
        self.version = str(self.model.tag)
        # The training ranges as (name, low, high) for one flower, and as two arrays for a batch.
        self.bounds = [(name, *self.ranges[name]) for name in FEATURES]
        self.low, self.high = np.array([bound[1:] for bound in self.bounds]).T
        self.counted = [predictions_total.labels(species=species) for species in SPECIES]
        self.species_names = np.array(SPECIES, dtype=object)
        self.info = {
            "tag": self.version,
            "backend": self.predictor.backend,
            "git_commit": metadata["git_commit"],
            "train_data_md5": metadata["train_data_md5"],
            "params": json.loads(metadata["params"]),
            "held_out_accuracy": metadata["held_out_accuracy"],
            "metrics": metadata.get("metrics", {}),
            "feature_ranges_cm": self.ranges,
            "feature_medians_cm": metadata["feature_medians_cm"],
            "features": list(FEATURES),
            "species": list(SPECIES),
            "library_versions": metadata["library_versions"],
            "created_at": self.model.info.creation_time.isoformat(),
        }
        self.predictor.predict_proba(np.array([list(EXAMPLE_FLOWER.values())]))  # warm the session
        freeze_heap()
        self.ready = True

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    def _results(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Predictions for rows of cm, as plain dicts: one model call, then one cheap pass per row."""
        started = time.perf_counter()
        probabilities = self.predictor.predict_proba(rows)
        model_call_seconds.observe(time.perf_counter() - started)
        best = probabilities.argmax(axis=1)
        for counter, count in zip(self.counted, np.bincount(best, minlength=len(SPECIES)).tolist(), strict=True):
            if count:
                counter.inc(count)
        outside = (rows < self.low) | (rows > self.high)
        warnings: list[list[str]] = [[]] * len(rows)  # shared empty list: read-only, serialized once each
        for row in np.flatnonzero(outside.any(axis=1)).tolist():
            warnings[row] = [name for name, out in zip(FEATURES, outside[row].tolist(), strict=True) if out]
        first, second, third = SPECIES
        version = self.version
        return [
            {
                "species": species,
                "probabilities": {first: p1, second: p2, third: p3},
                "model_version": version,
                "warnings": w,
            }
            for species, (p1, p2, p3), w in zip(
                self.species_names[best].tolist(), probabilities.tolist(), warnings, strict=True
            )
        ]

    # The responses are serialized here with orjson; the annotations still document their schema.
    @bentoml.api(input_spec=Flower, output_spec=Prediction)
    async def classify(self, **flower: float) -> Prediction:
        """One flower -> species, probabilities per species, model version, out-of-range warnings."""
        # ~15 us of work: cheaper on the event loop than a hop to the worker thread pool. Plain floats
        # rather than _results' numpy: on one row numpy's per-call overhead is most of the cost.
        values = [flower[name] for name in FEATURES]
        started = time.perf_counter()
        probabilities = self.predictor.predict_one(values)
        model_call_seconds.observe(time.perf_counter() - started)
        best = probabilities.index(max(probabilities))  # the first of equals, as numpy's argmax
        self.counted[best].inc()
        answer = {
            "species": SPECIES[best],
            "probabilities": dict(zip(SPECIES, probabilities, strict=True)),
            "model_version": self.version,
            "warnings": [
                name for (name, low, high), value in zip(self.bounds, values, strict=True) if not low <= value <= high
            ],
        }
        return JSONBytes(orjson.dumps(answer))  # type: ignore[return-value]

    @bentoml.api(input_spec=FlowerBatch)
    def classify_batch(self, flowers: list[FlowerFields]) -> list[Prediction]:
        """Up to MAX_BATCH_FLOWERS flowers -> one prediction each, in the same order."""
        measurements = itertools.chain.from_iterable(map(MEASUREMENTS_IN, flowers))
        rows = np.fromiter(measurements, dtype=np.float64, count=len(flowers) * len(FEATURES))
        rows = rows.reshape(len(flowers), len(FEATURES))
        return JSONBytes(orjson.dumps(self._results(rows)))  # type: ignore[return-value]

    @web_app.get("/model")
    def model_card(self) -> dict[str, Any]:
        """The served model: tag, git commit, training-data hash, params and training metrics."""
        from bentoml._internal.context import server_context

        # The Bento's version is the commit it was built from (None when serving the work tree).
        return {**self.info, "bento_commit": server_context.bento_version}


IrisClassifier.add_asgi_middleware(RequestGuard, max_bytes=MAX_BODY_BYTES)
IrisClassifier.add_asgi_middleware(OpenAPI30Fixes)
# The UI's Gradio routes are not part of this API. BentoML documents every mounted FastAPI app, so
# the Gradio app is wrapped in a plain Starlette app: same routes served, none in /docs.json.
IrisClassifier.mount_apps[:] = [
    (Starlette(routes=[Mount("/", app=app)]) if name == "gradio_ui" else app, path, name)
    for app, path, name in IrisClassifier.mount_apps
]
