"""The BentoML service: a typed HTTP API over the model the pipeline stored."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from fastapi import FastAPI, Request
from prometheus_client import Counter, Histogram
from starlette.responses import JSONResponse, Response

from iris_classifier.data.production_log import monitor_dir
from iris_classifier.domain.schema import (
    EXAMPLE_FLOWER,
    FEATURES,
    MEASUREMENTS_IN,
    SPECIES,
    Flower,
    FlowerFields,
    FlowerList,
    Label,
    LabelAnswer,
    LabelBatch,
    well_formed_batch,
)
from iris_classifier.model.pipeline import Predictor
from iris_classifier.model.store import ModelCard, ModelNotFoundError, model_tag_to_serve, stored_model
from iris_classifier.registry.versions import served_release
from iris_classifier.serving import bentoml_compat, uvicorn_compat
from iris_classifier.serving.admission import Admission, AdmissionControl, PodMemory, charged_work
from iris_classifier.serving.answers import Answers, Classification, Predictions
from iris_classifier.serving.batch_body import batch_rows
from iris_classifier.serving.feedback import Feedback, LabelAnswers, LabelConflict, authorized
from iris_classifier.serving.lazy_ui import LazyASGIApp
from iris_classifier.serving.middleware import MAX_BODY_BYTES, RequestGuard
from iris_classifier.serving.openapi import OpenAPI30Fixes
from iris_classifier.serving.prediction_log import PredictionLog  # every flower, via bentoml.monitor
from iris_classifier.serving.private_apis import BATCH_FAST_PATH, BOUNDED_REQUEST_HEAD, RESPONSE_START_TIMEOUT
from iris_classifier.serving.settings import freeze_heap, head_limits, server_settings
from iris_classifier.serving.shadow import (  # IRIS_SHADOW: a second model, answers logged only
    shadow_from_environment,
    shadow_model_to_pack,
)
from iris_classifier.serving.status_metrics import append_status_metrics  # readiness, memory, drift
from iris_classifier.serving.v2 import routes as v2
from iris_classifier.serving.v2.errors import EXCEPTION_HANDLERS as V2_ERROR_HANDLERS

try:  # refuse to start, saying what to run, when there is no model
    MODEL_CARD = ModelCard.from_store_entry(stored_model(model_tag_to_serve()))
except ModelNotFoundError as missing:
    raise SystemExit(f"iris_classifier: {missing}") from None

# The reaches into private internals (iris_classifier/serving/private_apis.py, docs/private-apis.md).
if RESPONSE_START_TIMEOUT.enabled():
    bentoml_compat.install_response_start_timeout()
if BOUNDED_REQUEST_HEAD.enabled():
    uvicorn_compat.install_bounded_protocol(**head_limits())  # a request's head: bounded in bytes and in seconds
FAST_BATCHES = BATCH_FAST_PATH.enabled()
ADMISSION = Admission()  # flowers in flight against the memory budget; configured once the model is loaded

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
batches_parsed_total = Counter(
    name="iris_batches_parsed_total",
    documentation="/classify_batch bodies parsed, by path: fast (a plain well-formed batch) or validated (pydantic)",
    labelnames=["path"],
)
batches_parsed = {path: batches_parsed_total.labels(path=path) for path in ("fast", "validated")}
feedback_labels_total = Counter(
    name="iris_feedback_labels_total",
    documentation="Labelled flowers (POST /feedback), by predicted and true species; correct is unknown when "
    "this replica no longer remembered the prediction",
    labelnames=["predicted", "actual", "correct"],
)
feedback_rejected_total = Counter(
    name="iris_feedback_rejected_total",
    documentation="Feedback requests refused, by reason (conflict, unauthorized, rate_limited)",
    labelnames=["reason"],
)


# Routes beside the typed APIs (/model, the V2 protocol); mounted at "/", it only answers the paths it defines.
web_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, exception_handlers=V2_ERROR_HANDLERS)
ModelVersion = v2.version_in_path(MODEL_CARD.tag.split(":", 1)[1])  # the V2 routes' documented version
V2_SERVED = v2.Served()  # the instance's V2 endpoints, for the /v2 middleware that answers infer directly


class FlowerBatch(bentoml.IODescriptor):
    flowers: FlowerList

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> FlowerBatch:
        """The batch as rows of cm (an (N, 4) float64 array), which is what /classify_batch receives.

        A body that certainly passes takes the fast path, straight to rows (no object per flower is held while
        the request waits for the model); pydantic judges (and explains) all others. That BentoML validates a
        request's JSON body with this classmethod is not documented: private API `batch-fast-path`."""
        data = json_data.encode() if isinstance(json_data, str) else bytes(json_data)
        if FAST_BATCHES:
            rows = batch_rows(
                data
            )  # the layouts clients write, straight to rows (iris_classifier/serving/batch_body.py)
            if rows is not None:
                batches_parsed["fast"].inc()
                return cls.model_construct(flowers=rows)
        flowers = well_formed_batch(data) if FAST_BATCHES else None
        if flowers is None:
            flowers = super().model_validate_json(json_data, **kwargs).flowers
            batches_parsed["validated"].inc()
        else:
            batches_parsed["fast"].inc()
        return cls.model_construct(flowers=rows_of(flowers))


def rows_of(flowers: list[FlowerFields]) -> np.ndarray:
    """Flowers as an (N, 4) float64 array of cm, in FEATURES order."""
    measurements = itertools.chain.from_iterable(map(MEASUREMENTS_IN, flowers))
    return np.fromiter(measurements, dtype=np.float64, count=len(flowers) * len(FEATURES)).reshape(-1, len(FEATURES))


def build_ui() -> Any:
    from demo.app import mounted_app  # imports Gradio (~2.3 s): on the first /ui request, not at start

    max_concurrency = server_settings().get("traffic", {}).get("max_concurrency")
    return mounted_app(path="/ui", card=MODEL_CARD, max_concurrency=max_concurrency)


# The UI is built on its first request (iris_classifier/serving/lazy_ui.py). A plain ASGI app, so BentoML
# leaves its routes out of /docs.json.
ui = LazyASGIApp(build_ui, path="/ui", after_build=freeze_heap)


@bentoml.service(name="iris_classifier", **server_settings())
@bentoml.asgi_app(ui, path="/ui", name="gradio_ui")
@bentoml.asgi_app(web_app, path="/")
class IrisClassifier:
    """Classifies iris flowers from four measurements in cm."""

    model = bentoml.models.BentoModel(MODEL_CARD.tag)
    if shadow_tag := shadow_model_to_pack():  # packed into the Bento beside the served model (docs/shadow.md)
        shadow_model = bentoml.models.BentoModel(shadow_tag)

    def __init__(self) -> None:
        # The forest's lookup table is built beside the first requests (the session answers them meanwhile).
        self.predictor = Predictor.from_dir(Path(self.model.path), grid_in_background=True)
        self.card = ModelCard.from_store_entry(self.model)
        self.version = self.card.tag
        # The training ranges as (name, low, high) for one flower, and as two arrays for a batch.
        self.bounds = [(name, *self.card.feature_ranges_cm[name]) for name in FEATURES]
        self.low, self.high = np.array([bound[1:] for bound in self.bounds]).T
        self.counted = [predictions_total.labels(species=species) for species in SPECIES]
        self.species_names = np.array(SPECIES, dtype=object)
        self.description = {
            **self.card.as_dict(),
            "backend": self.predictor.backend,
        }
        self.predictor.predict_proba(np.array([list(EXAMPLE_FLOWER.values())]))  # warm the session
        self.answers = Answers(self.version)
        self.memory = PodMemory.read(monitor_dir())  # the pod's memory limit; is the log's folder in memory?
        self.prediction_log = PredictionLog(self.version, **self.memory.log_rotation())
        self.ground_truth = Feedback.from_environment(monitor_dir(), feedback_labels_total, feedback_rejected_total)
        self.remember = self.ground_truth.recent.remember  # request id -> species, for /feedback's "correct"
        # Every label series at 0 from the start: increase() never counts a series' first sample.
        for predicted in (*SPECIES, "unknown"):
            for actual in SPECIES:
                correct = "unknown" if predicted == "unknown" else str(predicted == actual).lower()
                feedback_labels_total.labels(predicted=predicted, actual=actual, correct=correct)
        for reason in ("conflict", "unauthorized", "rate_limited"):
            feedback_rejected_total.labels(reason=reason)
        self.v2 = v2.OpenInference(
            version=self.model.tag.version,
            backend=self.predictor.backend,
            predict=self._predict,
            is_ready=self.__is_ready__,
            request_id=bentoml_compat.request_id,
        )
        V2_SERVED.endpoints = self.v2
        self.shadow = shadow_from_environment(
            champion_version=self.version,
            log_dir=monitor_dir(),
            admission=ADMISSION,
            log_in_memory=self.memory.log_in_memory,
            **self.memory.log_rotation(),
        )
        freeze_heap()
        budget = self.memory.budget(workers=server_settings()["workers"], reserved_bytes=self.shadow.reserved_bytes)
        ADMISSION.configure(budget, self.memory.pressure_check())
        self.ready = True
        ui.build_soon()  # the web UI in the background, after readiness (iris_classifier/serving/lazy_ui.py)

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        """The Open Inference Protocol over gRPC beside HTTP, on this worker's event loop (IRIS_GRPC_PORT, default
        3001; iris_classifier/serving/v2/grpc_server.py): the same model call, validation and admission control."""
        from iris_classifier.serving.v2.grpc_server import GrpcServer  # grpc imported by the worker only

        self.grpc = await GrpcServer.start(self.v2, ADMISSION, workers=server_settings()["workers"])

    @bentoml.on_shutdown
    async def stop_grpc(self) -> None:
        """Before the prediction log's flush (hooks run by name): the gRPC calls in flight finish first."""
        if getattr(self, "grpc", None) is not None:
            await self.grpc.stop()

    @bentoml.on_shutdown
    def write_prediction_log(self) -> None:
        """A graceful stop (SIGTERM) writes the queued prediction log before the worker exits (the worker
        never runs atexit hooks); accepted labels are on disk already (fsynced before their 2xx)."""
        self.shadow.write_log()
        self.prediction_log.flush()

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    def __metrics__(self, text: str) -> str:  # BentoML appends this to /metrics
        return append_status_metrics(text, ready=self.__is_ready__())

    def _timed_model_call(self, predict: Any, rows: Any) -> Any:
        """One model call, observed in iris_model_call_seconds."""
        started = time.perf_counter()
        probabilities = predict(rows)
        model_call_seconds.observe(time.perf_counter() - started)
        return probabilities

    def _count_predictions(self, per_species: list[int]) -> None:
        for counter, count in zip(self.counted, per_species, strict=True):
            if count:
                counter.inc(count)

    def _predict(self, rows: np.ndarray, request_id: str) -> tuple[np.ndarray, list[str]]:
        """The one path of every classifying route (/classify, /classify_batch, V2 infer): probabilities and
        species for rows of cm, timed, counted, logged and remembered under the request's id."""
        probabilities = self._timed_model_call(self.predictor.predict_proba, rows)
        best = probabilities.argmax(axis=1)
        self._count_predictions(np.bincount(best, minlength=len(SPECIES)).tolist())
        species_names = self.species_names[best].tolist()
        self.prediction_log.record_batch(rows, species_names, probabilities, request_id)
        self.remember(request_id, species_names)
        self.shadow.offer(rows, probabilities, request_id)  # shadow hook: queued only, never changes the answer
        return probabilities, species_names

    def _warnings(self, rows: np.ndarray) -> list[list[str]]:
        """Per row of cm, the measurements outside the training ranges, in FEATURES order."""
        outside = (rows < self.low) | (rows > self.high)
        warnings: list[list[str]] = [[]] * len(rows)  # shared empty list: read-only, serialized once each
        for row in np.flatnonzero(outside.any(axis=1)).tolist():
            warnings[row] = [name for name, out in zip(FEATURES, outside[row].tolist(), strict=True) if out]
        return warnings

    # The APIs answer with Responses serialized by orjson (self.answers); output_spec documents their schema.
    @bentoml.api(input_spec=Flower, output_spec=Classification)
    async def classify(self, **flower: float) -> Response:
        """One flower -> species, probabilities per species, model version, out-of-range warnings, request id."""
        # Tens of microseconds of work: cheaper on the event loop than a hop to the worker thread pool.
        request_id = bentoml_compat.request_id()
        values = [flower[name] for name in FEATURES]
        probabilities, species = self._predict(np.array([values], dtype=np.float64), request_id)
        outside = [
            name for (name, low, high), value in zip(self.bounds, values, strict=True) if not low <= value <= high
        ]
        return self.answers.classification(species[0], probabilities[0].tolist(), outside, request_id)

    @bentoml.api(input_spec=FlowerBatch, output_spec=Predictions)
    def classify_batch(self, flowers: np.ndarray) -> Response:
        """Up to MAX_BATCH_FLOWERS flowers -> one prediction each, in the same order (FlowerBatch gives rows of cm)."""
        with charged_work():  # the request's admission charge lasts as long as this work, even past a 504
            request_id = bentoml_compat.request_id()
            probabilities, species = self._predict(flowers, request_id)
            return self.answers.batch(species, probabilities, self._warnings(flowers), request_id)

    # Ground truth (the feedback loop, docs/feedback.md): durable before the 2xx, idempotent, 409 on conflict.
    @bentoml.api(input_spec=Label, output_spec=LabelAnswer)
    def feedback(self, ctx: bentoml.Context, **label: Any) -> Response:
        """The true species of one classified flower: {request_id, species, index (a batch row; default 0)}."""
        return self._accept(ctx, [Label.model_construct(**label)], single=True)

    @bentoml.api(input_spec=LabelBatch, output_spec=LabelAnswers)
    def feedback_batch(self, ctx: bentoml.Context, labels: list[Label]) -> Response:
        """Many labels at once: recorded all together, or none of them (a conflict refuses the whole batch)."""
        return self._accept(ctx, labels, single=False)

    def _accept(self, ctx: bentoml.Context, labels: list[Label], *, single: bool) -> Response:
        feedback = self.ground_truth
        if not authorized(ctx.request.headers.get("authorization"), feedback.token):
            feedback.rejected.labels(reason="unauthorized").inc()
            return refuse(
                ctx,
                401,
                "Authorization: this server requires `Authorization: Bearer <token>` for feedback",
                {"WWW-Authenticate": "Bearer"},
            )
        source = ctx.request.client.host if ctx.request.client else "unknown"
        wait = feedback.limiter.take(source, len(labels))
        if wait:
            feedback.rejected.labels(reason="rate_limited").inc()
            return refuse(
                ctx,
                429,
                f"labels: more than {feedback.limiter.rate:g} labels per second from {source}; retry later",
                {"Retry-After": str(math.ceil(wait))},
            )
        try:
            answers = feedback.accept(labels)
        except LabelConflict as conflict:
            return refuse(ctx, 409, str(conflict))
        payload = [answer.model_dump() for answer in answers]
        return JSONResponse(payload[0] if single else {"labels": payload, "recorded": sum(a.recorded for a in answers)})

    @web_app.get("/model")
    def model_card(self) -> dict[str, Any]:
        """The served model: tag, git commit, training-data hash, params and training metrics."""
        # The Bento's version is the commit it was built from, and its registry version was resolved into
        # its labels at build time (both None when serving the work tree).
        return {
            **self.description,
            # the forest as a lookup table (model/grid.py): its cells once built in the background, else 0
            "lookup_table_cells": self.predictor.grid.cells if self.predictor.grid is not None else 0,
            "bento_commit": bentoml.server_context.bento_version,
            **served_release(bentoml_compat.serving_bento_labels(IrisClassifier)),
            "shadow": self.shadow.describe(),  # null without a shadow; why it is off when it failed
        }

    # Open Inference Protocol (KServe V2): thin routes over iris_classifier/serving/v2/ (refusals raise
    # ProtocolError, answered by web_app's handler). The two infer routes run for every infer path but the served
    # model's own (an unknown model or version: their 404, tests/service/test_open_inference.py); v2.ErrorBodies
    # answers the served model's paths before routing, with the same OpenInference.
    @web_app.get("/v2", **v2.SERVER_METADATA_ROUTE)
    def v2_server_metadata(self) -> Response:
        return v2.json_response(v2.server_metadata())

    @web_app.get("/v2/health/live", **v2.LIVE_ROUTE)
    def v2_server_live(self) -> Response:
        return v2.server_health("live", True)

    @web_app.get("/v2/health/ready", **v2.READY_ROUTE)
    def v2_server_ready(self) -> Response:
        return self.v2.server_ready()

    @web_app.get("/v2/models/{model_name}", **v2.MODEL_METADATA_ROUTE)
    def v2_model_metadata(self, model_name: v2.ModelName) -> Response:
        return self.v2.model_metadata(model_name)

    @web_app.get("/v2/models/{model_name}/versions/{model_version}", **v2.MODEL_METADATA_ROUTE)
    def v2_model_version_metadata(self, model_name: v2.ModelName, model_version: ModelVersion) -> Response:
        return self.v2.model_metadata(model_name, model_version)

    @web_app.get("/v2/models/{model_name}/ready", **v2.MODEL_READY_ROUTE)
    def v2_model_ready(self, model_name: v2.ModelName) -> Response:
        return self.v2.model_ready(model_name)

    @web_app.get("/v2/models/{model_name}/versions/{model_version}/ready", **v2.MODEL_READY_ROUTE)
    def v2_model_version_ready(self, model_name: v2.ModelName, model_version: ModelVersion) -> Response:
        return self.v2.model_ready(model_name, model_version)

    @web_app.post("/v2/models/{model_name}/infer", **v2.INFER_ROUTE)
    async def v2_infer(self, request: Request, model_name: v2.ModelName) -> Response:
        return await self.v2.infer(request, model_name)

    @web_app.post("/v2/models/{model_name}/versions/{model_version}/infer", **v2.INFER_ROUTE)
    async def v2_version_infer(
        self, request: Request, model_name: v2.ModelName, model_version: ModelVersion
    ) -> Response:
        return await self.v2.infer(request, model_name, model_version)


def refuse(ctx: bentoml.Context, status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    """An {"error": ...} answer from an API that takes a Context (BentoML sets the status from the context)."""
    ctx.response.status_code = status
    ctx.response.headers.update(headers or {})
    return JSONResponse({"error": error}, status_code=status, headers=headers)


IrisClassifier.add_asgi_middleware(AdmissionControl, admission=ADMISSION)  # many-flower requests vs the budget
IrisClassifier.add_asgi_middleware(RequestGuard, max_bytes=MAX_BODY_BYTES, form_paths=("/ui/",))  # the UI's upload
IrisClassifier.add_asgi_middleware(OpenAPI30Fixes)
IrisClassifier.add_asgi_middleware(v2.ErrorBodies, served=V2_SERVED)  # V2 infer answered there; errors as the spec's
