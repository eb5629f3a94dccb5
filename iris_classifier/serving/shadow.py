"""Shadow serving: a second model is given every flower the served model answers, off the request's path, and
its answers are logged beside the prediction log, never returned.

`IRIS_SHADOW` names the shadow: a registry stage (`staging`) or version (`v1.1.0`, `1.1.0`), resolved to a
stored model where the registry is (`make serve SHADOW=...` resolves it with iris_classifier.registry.stage_model
and hands the server `IRIS_SHADOW_MODEL`, the model's BentoML tag; a server started from the source tree
resolves it itself), or a model tag (`iris_classifier:...`). Unset: no shadow, and nothing here runs.

What a client gets never changes: the service offers each answered request's rows, the served model's
probabilities and the request id (`offer`), which only appends them to a bounded queue (at most
`IRIS_SHADOW_QUEUE_FLOWERS` flowers). A background thread takes the whole queue every SWEEP_SECONDS (sooner
once a full batch waits), classifies it with the shadow model in one call per CHUNK_FLOWERS, and writes one log
line per flower; it works at most `IRIS_SHADOW_CPU_SHARE` (CPU_SHARE) of the time and rests the remainder.
Work that does not fit is shed, never waited for: when the queue is full, when the pod's memory is
near its limit, or when the clients' own many-flower requests hold more than half the admission budget (their
work comes first). A shadow that cannot be loaded leaves the service serving without one; a shadow call that
raises loses those flowers' shadow answers. Both are logged, counted (`iris_shadow_errors_total`) and said by
`GET /model`'s "shadow".

The shadow log: `$IRIS_MONITOR_DIR/iris_shadow/data/data.<host>.<worker>.log`, written and rotated by the
prediction log's own writer (BufferedMonitor), one JSON line per flower: its row `index` in the request, both
versions, both species, the probability each model gave its species, the shadow call's latency, and the
`timestamp` and `request_id` (the id `/feedback` takes) the writer adds (the measurements are in the prediction
log under the same request id and row).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from iris_classifier.data.production_log import SHADOW_NAME
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.serving.admission import Admission
from iris_classifier.serving.prediction_log import BufferedMonitor, groups

logger = logging.getLogger("bentoml.iris_classifier.shadow")  # under "bentoml": in the server's log

SHADOW_ENV = "IRIS_SHADOW"  # a stage, a version or a model tag
MODEL_ENV = "IRIS_SHADOW_MODEL"  # the stored model's tag, when the name was resolved before the server started
ERROR_ENV = "IRIS_SHADOW_ERROR"  # why the name resolved to no model (the server then runs without a shadow)
QUEUE_ENV = "IRIS_SHADOW_QUEUE_FLOWERS"

MAX_QUEUED_FLOWERS = 20_000  # two full batches: beyond that the shadow is behind, and sheds
# What one queued flower may hold until the shadow has logged it: a one-flower request's lists and tuple (~0.4 kB;
# a batch's rows and probabilities are ~56 bytes a flower), then its log record's columns. Counted in the
# admission budget (admission.PodMemory.budget's reserved_bytes).
QUEUED_FLOWER_BYTES = 1024
CHUNK_FLOWERS = 10_000  # flowers per shadow model call
SWEEP_SECONDS = 0.05  # the queue is taken at least this often: many one-flower requests make one model call
# The shadow's thread works at most this share of the time (classifying and writing its log), then rests: it
# competes with the requests for the GIL and the cores, so under load its queue fills and it sheds, by design.
CPU_SHARE = 0.2
CPU_SHARE_ENV = "IRIS_SHADOW_CPU_SHARE"
ERROR_LOG_EVERY = 100  # a failing shadow logs its first error, then every this many

# Per flower, beside the writer's timestamp and request id. The measurements and the served model's probabilities
# per species are in the prediction log under the same request id; each probability here is of the species its
# model chose. Eight columns, not sixteen: the writer's cost per flower is per column.
LOG_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("index", "feature", "numerical"),
    ("champion_version", "prediction", "categorical"),
    ("shadow_version", "prediction", "categorical"),
    ("champion_species", "prediction", "categorical"),
    ("shadow_species", "prediction", "categorical"),
    ("champion_probability", "prediction", "numerical"),
    ("shadow_probability", "prediction", "numerical"),
    ("shadow_latency_ms", "prediction", "numerical"),
)

shadow_flowers_total = Counter(
    name="iris_shadow_flowers_total",
    documentation="Flowers the shadow model classified, by agreement with the served model (agree, disagree)",
    labelnames=["agreement"],
)
shadow_shed_total = Counter(
    name="iris_shadow_shed_flowers_total",
    documentation="Flowers not given to the shadow model, by reason: queue_full (it fell MAX_QUEUED_FLOWERS "
    "behind), memory_pressure (the pod is near its memory limit), load (clients' batches hold over half the "
    "admission budget)",
    labelnames=["reason"],
)
shadow_errors_total = Counter(
    name="iris_shadow_errors_total",
    documentation="Shadow failures, by stage: load (the shadow model could not be loaded: no shadow runs), "
    "predict (a shadow model call raised: its flowers have no shadow answer)",
    labelnames=["stage"],
)
shadow_call_seconds = Histogram(
    name="iris_shadow_model_call_seconds",
    documentation="Time the shadow model takes per call (one call classifies everything queued, up to "
    "CHUNK_FLOWERS flowers)",
    buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0),
)
shadow_active = Gauge(
    name="iris_shadow_active",
    documentation="1 when the worker runs a shadow model, 0 when none is configured or it failed to load",
    multiprocess_mode="max",
)
for _agreement in ("agree", "disagree"):  # at 0 from the start: increase() never counts a first sample
    shadow_flowers_total.labels(agreement=_agreement)
for _reason in ("queue_full", "memory_pressure", "load"):
    shadow_shed_total.labels(reason=_reason)
for _stage in ("load", "predict"):
    shadow_errors_total.labels(stage=_stage)


class NoShadow:
    """No shadow: none configured (`requested` None), or the one named could not be loaded (`error` says why)."""

    reserved_bytes = 0

    def __init__(self, requested: str | None = None, error: str | None = None) -> None:
        self.requested = requested
        self.error = error
        shadow_active.set(0)

    def offer(self, rows: Any, probabilities: Any, request_id: str) -> None:
        return None

    def describe(self) -> dict[str, Any] | None:
        """GET /model's "shadow": null without one, else what was asked for and why it is off."""
        if self.requested is None:
            return None
        return {"requested": self.requested, "active": False, "error": self.error}

    def write_log(self) -> int:
        return 0


class Shadow:
    """A loaded shadow model, its bounded queue, the thread that classifies what is queued, and its log."""

    def __init__(
        self,
        *,
        predictor: Predictor,
        version: str,
        tag: str,
        requested: str,
        champion_version: str,
        log_dir: Path,
        admission: Admission | None = None,
        max_queued: int = MAX_QUEUED_FLOWERS,
        cpu_share: float = CPU_SHARE,
        log_in_memory: bool = False,
        **rotation: int,
    ) -> None:
        self.predictor = predictor
        self.version = version
        self.tag = tag
        self.requested = requested
        self.champion_version = champion_version
        self.admission = admission
        self.max_queued = max_queued
        self.cpu_share = min(1.0, max(0.01, cpu_share))
        # its queue at most, and its log's files when they live in memory (a tmpfs: rotated like the prediction log)
        log_files = rotation.get("max_bytes", 0) * (rotation.get("backup_count", 0) + 1) if log_in_memory else 0
        self.reserved_bytes = max_queued * QUEUED_FLOWER_BYTES + log_files
        # (request id, rows, probabilities, single) per request; `queued` flowers in all, at most max_queued
        self.pending: list[tuple[str, Any, Any, bool]] = []
        self.queued = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.shadowed = self.agreed = self.shed = self.errors = 0
        self.last_error: str | None = None
        self.log = BufferedMonitor(SHADOW_NAME, str(log_dir), max_pending=max_queued, **rotation)
        self.log.export_schema({name: {"name": name, "role": role, "type": kind} for name, role, kind in LOG_COLUMNS})
        thread = threading.Thread(target=self._run, args=(weakref.ref(self),), name="shadow", daemon=True)
        thread.start()
        shadow_active.set(1)

    # -- the request path: append or shed, nothing else -------------------------------------------------

    def offer(self, rows: np.ndarray, probabilities: np.ndarray, request_id: str) -> None:
        """A request's rows of cm (N x FEATURES) and the served model's probabilities (N x SPECIES). One flower is
        queued as a single (one array for all the singles of a group, one log row each, no columns)."""
        if len(rows) == 1:
            self._queue((request_id, rows[0], probabilities[0], True), 1)
        else:
            self._queue((request_id, rows, probabilities, False), len(rows))

    def _queue(self, entry: tuple[str, Any, Any, bool], flowers: int) -> None:
        reason = self._shed_reason(flowers)
        if reason is None:
            with self.lock:
                if self.queued + flowers > self.max_queued:
                    reason = "queue_full"
                else:
                    self.pending.append(entry)
                    self.queued += flowers
                    queued = self.queued
            if reason is None:
                if queued >= CHUNK_FLOWERS:
                    self.wake.set()
                return
        self.shed += flowers
        shadow_shed_total.labels(reason=reason).inc(flowers)

    def _shed_reason(self, flowers: int) -> str | None:
        admission = self.admission
        if admission is None or admission.budget is None or admission.budget.flowers is None:
            return None
        if admission.under_pressure is not None and admission.under_pressure():
            return "memory_pressure"
        if admission.in_flight > admission.budget.flowers // 2:
            return "load"
        return None

    # -- the shadow's thread ------------------------------------------------------------------------------

    @staticmethod
    def _run(ref: weakref.ref[Shadow]) -> None:
        while (shadow := ref()) is not None:
            wake, share = shadow.wake, shadow.cpu_share
            started = time.perf_counter()
            shadow.write_log()
            busy = time.perf_counter() - started
            del shadow  # no strong reference while asleep
            if busy > 0.001:  # the duty cycle: rest so that the shadow's work stays within its share of the time
                time.sleep(busy * (1 / share - 1))
            wake.wait(SWEEP_SECONDS)
            wake.clear()

    def flush(self) -> int:
        """Classify and log everything queued now; returns the number of flowers the shadow answered."""
        with self.lock:
            taken, self.pending, self.queued = collections.deque(self.pending), [], 0
        return sum(self._classify(group) for group in groups(taken, CHUNK_FLOWERS, _flowers))

    def _classify(self, group: list[tuple[str, Any, Any, bool]]) -> int:
        """One shadow model call for a group of queued requests, counted and logged; never raises."""
        batches = [entry for entry in group if not entry[3]]
        singles = [entry for entry in group if entry[3]]
        rows_parts = [np.asarray(entry[1], dtype=np.float64).reshape(-1, len(FEATURES)) for entry in batches]
        champion_parts = [np.asarray(entry[2], dtype=np.float64).reshape(-1, len(SPECIES)) for entry in batches]
        if singles:  # one array for all the one-flower requests: no array per flower
            rows_parts.append(np.array([entry[1] for entry in singles], dtype=np.float64).reshape(-1, len(FEATURES)))
            champion_parts.append(np.array([entry[2] for entry in singles], dtype=np.float64).reshape(-1, len(SPECIES)))
        rows, champion = np.concatenate(rows_parts), np.concatenate(champion_parts)
        started = time.perf_counter()
        try:
            shadow = np.asarray(self.predictor.predict_proba(rows), dtype=np.float64)
            if shadow.shape != champion.shape:
                raise ValueError(f"the shadow answered shape {shadow.shape} for {champion.shape[0]} flowers")
        except Exception as error:  # a failing shadow never reaches a client: its flowers go unanswered
            self.errors += 1
            self.last_error = f"{type(error).__name__}: {error}"
            shadow_errors_total.labels(stage="predict").inc()
            if self.errors % ERROR_LOG_EVERY == 1:
                logger.error("shadow %s: a call raised (%s); %d so far", self.version, self.last_error, self.errors)
            return 0
        seconds = time.perf_counter() - started
        shadow_call_seconds.observe(seconds)
        champion_best, shadow_best = champion.argmax(axis=1), shadow.argmax(axis=1)
        agreed = int((champion_best == shadow_best).sum())
        self.shadowed += len(rows)
        self.agreed += agreed
        shadow_flowers_total.labels(agreement="agree").inc(agreed)
        shadow_flowers_total.labels(agreement="disagree").inc(len(rows) - agreed)
        try:
            self._log(batches, singles, rows, champion, shadow, champion_best, shadow_best, seconds * 1000)
        except Exception as error:  # the log's own writer never raises; this guards the columns built here
            logger.error("shadow %s: could not log a group (%s: %s)", self.version, type(error).__name__, error)
        return len(rows)

    def _log(self, batches, singles, rows, champion, shadow, champion_best, shadow_best, latency_ms) -> None:
        names = np.array(SPECIES, dtype=object)
        latency = round(latency_ms, 4)
        everyone = np.arange(len(rows))
        champion_chance = champion[everyone, champion_best]
        shadow_chance = shadow[everyone, shadow_best]
        offset = 0
        for request_id, batch_rows, _, _ in batches:
            count = len(batch_rows)
            part = slice(offset, offset + count)
            columns = [
                everyone[:count],
                [self.champion_version] * count,
                [self.version] * count,
                names[champion_best[part]].tolist(),
                names[shadow_best[part]].tolist(),
                champion_chance[part],
                shadow_chance[part],
                [latency] * count,
            ]
            self.log.queue_columns(columns, request_id)
            offset += count
        for number in range(offset, len(rows)):
            self.log.queue_row(
                (
                    0,
                    self.champion_version,
                    self.version,
                    SPECIES[champion_best[number]],
                    SPECIES[shadow_best[number]],
                    float(champion_chance[number]),
                    float(shadow_chance[number]),
                    latency,
                ),
                singles[number - offset][0],
            )

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tag": self.tag,
            "requested": self.requested,
            "active": True,
            "backend": self.predictor.backend,
            "log": str(self.log.data_path),
            "shadowed": self.shadowed,
            "agreement": round(self.agreed / self.shadowed, 6) if self.shadowed else None,
            "shed": self.shed,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def write_log(self) -> int:
        """What is queued, classified, then the log written (tests, shutdown); returns the records written."""
        self.flush()
        return self.log.flush()


def _flowers(entry: tuple[str, Any, Any, bool]) -> int:
    return 1 if entry[3] else len(entry[1])


def shadow_from_environment(
    *,
    champion_version: str,
    log_dir: Path,
    admission: Admission | None = None,
    log_in_memory: bool = False,
    **rotation: int,
) -> Shadow | NoShadow:
    """The shadow IRIS_SHADOW names, loaded; or NoShadow (none named, or why it could not be loaded: logged)."""
    requested = os.environ.get(SHADOW_ENV, "").strip()
    if not requested:
        return NoShadow()
    try:
        tag, version = resolve(requested)
        import bentoml

        predictor = Predictor.from_dir(Path(bentoml.models.get(tag).path))
    except Exception as error:
        reason = str(error) if isinstance(error, ShadowUnavailable) else f"{type(error).__name__}: {error}"
        logger.error("shadow: off: %s=%s cannot be loaded: %s; serving without one", SHADOW_ENV, requested, reason)
        shadow_errors_total.labels(stage="load").inc()
        return NoShadow(requested, reason)
    max_queued = int(os.environ.get(QUEUE_ENV) or MAX_QUEUED_FLOWERS)
    cpu_share = float(os.environ.get(CPU_SHARE_ENV) or CPU_SHARE)
    shadow = Shadow(
        predictor=predictor,
        version=version,
        tag=tag,
        requested=requested,
        champion_version=champion_version,
        log_dir=log_dir,
        admission=admission,
        max_queued=max_queued,
        cpu_share=cpu_share,
        log_in_memory=log_in_memory,
        **rotation,
    )
    logger.info("shadow: %s (%s) sees every flower; its answers go to %s only", version, tag, shadow.log.data_path)
    return shadow


def shadow_model_to_pack() -> str | None:
    """The shadow model's tag when IRIS_SHADOW_MODEL names one the store holds: the service declares it, so a
    Bento built with a shadow (`make bento SHADOW=...`) carries it into the image; else None."""
    tag = os.environ.get(MODEL_ENV)
    if not tag:
        return None
    import bentoml

    try:
        bentoml.models.get(tag)
    except Exception:  # not in this store: the shadow's load says why, the service never fails for it
        return None
    return tag


class ShadowUnavailable(RuntimeError):
    """The shadow's name resolves to no model; the message says why."""


def resolve(requested: str) -> tuple[str, str]:
    """(model tag, version) for IRIS_SHADOW: given with IRIS_SHADOW_MODEL, a model tag itself, or looked up in the
    registry (a server started from the source tree: git and GTO are there)."""
    if os.environ.get(ERROR_ENV):
        raise ShadowUnavailable(os.environ[ERROR_ENV])
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV], requested
    if ":" in requested:
        return requested, requested
    try:
        from iris_classifier.registry.stage_model import StageModelError, stage_model
    except ImportError as error:
        raise ShadowUnavailable(
            f"{requested!r} names a registry stage or version, and this server cannot read the registry ({error}); "
            f"resolve it where the registry is (`make serve SHADOW={requested}` does) or set {MODEL_ENV} to its tag"
        ) from None
    try:
        model = stage_model(requested)
    except StageModelError as error:
        raise ShadowUnavailable(str(error)) from None
    except Exception as error:  # no git checkout (a Bento, an image): GTO cannot read tags
        raise ShadowUnavailable(
            f"{requested!r} names a registry stage or version, and this server cannot read the registry "
            f"({type(error).__name__}: {error}); set {MODEL_ENV} to the model's tag, or serve with "
            f"`make serve SHADOW={requested}`"
        ) from None
    return model.tag, model.version
