"""Ground truth from the field: the labels `POST /feedback` accepts, kept durably beside the prediction log.

Layout: `$IRIS_MONITOR_DIR/feedback/labels.<host>.<pid>.jsonl`, one JSON object per label
(`request_id`, `index`, `species`, `received_at`, `predicted`), one file per serving process, so replicas
that share a volume never interleave writes. The retraining job joins these with the prediction log
(iris_classifier.monitoring.feedback).

Durability (the fsync policy): a label is appended and `os.fsync`ed before the service answers 2xx, so
an accepted label survives a crash or a kill; a /feedback_batch is one write and one fsync. Nothing is
buffered, so a graceful stop (SIGTERM) has no labels to flush.

Conflicts: the same label twice is idempotent; a different species for the same flower is refused (409).
A process knows every label in the folder when it starts and every label it accepted since; a label sent
to another replica at the same time is not seen until restart: the join keeps the first label of a flower
and counts the others as conflicts.
"""

from __future__ import annotations

import collections
import hmac
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import BaseModel, Field

from iris_classifier.data.production_log import FEEDBACK_DIRNAME, label_files, read_label_lines
from iris_classifier.domain.schema import Label, LabelAnswer

TOKEN_ENV = "IRIS_FEEDBACK_TOKEN"
RATE_ENV = "IRIS_FEEDBACK_RATE"  # labels per second per source (client address); burst is 10 s of it
DEFAULT_RATE = 100.0


class LabelAnswers(BaseModel):
    """What /feedback_batch answers: one answer per label, in request order, and how many were new."""

    labels: list[LabelAnswer]
    recorded: int = Field(description="labels recorded now (the others had been recorded before)")


class LabelConflict(ValueError):
    """A flower already has a different label."""

    def __init__(self, conflicts: list[tuple[Label, str]]) -> None:
        self.conflicts = conflicts
        shown = "; ".join(
            f"request_id {label.request_id!r} index {label.index} is already labelled {known!r}, not {label.species!r}"
            for label, known in conflicts[:5]
        )
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        super().__init__(f"species: a flower has one true species: {shown}{more}")


class RecentPredictions:
    """What this process answered lately, by request id, so /feedback can say whether it was right.

    Bounded by flowers, not requests: the oldest requests are forgotten first. Written from the event loop
    (/classify) and from worker threads (/classify_batch, V2 infer, /feedback), so under a lock.
    """

    def __init__(self, max_flowers: int = 200_000) -> None:
        self.max_flowers = max_flowers
        self._species: collections.OrderedDict[str, Sequence[str]] = collections.OrderedDict()
        self._flowers = 0
        self._lock = threading.Lock()

    def remember(self, request_id: str, species: Sequence[str]) -> None:
        with self._lock:
            forgotten = self._species.pop(request_id, ())  # a request id seen again replaces its flowers
            self._species[request_id] = species
            self._flowers += len(species) - len(forgotten)
            while self._flowers > self.max_flowers and self._species:
                _, forgotten = self._species.popitem(last=False)
                self._flowers -= len(forgotten)

    def predicted(self, request_id: str, index: int) -> str | None:
        with self._lock:
            species = self._species.get(request_id)
        return species[index] if species is not None and 0 <= index < len(species) else None

    @property
    def flowers(self) -> int:
        """Flowers remembered now (what the bound counts)."""
        with self._lock:
            return self._flowers


class LabelStore:
    """Accepted labels: appended and fsynced to this process's file, indexed in memory for conflicts."""

    def __init__(self, log_dir: Path) -> None:
        self.folder = log_dir / FEEDBACK_DIRNAME
        self.path = self.folder / f"labels.{socket.gethostname()}.{os.getpid()}.jsonl"
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int], str] | None = None  # read from disk on first use

    def _index(self) -> dict[tuple[str, int], str]:
        if self._known is None:
            known: dict[tuple[str, int], str] = {}
            for path in label_files(self.folder.parent) if self.folder.exists() else []:
                for record in read_label_lines(path):
                    known.setdefault((str(record["request_id"]), int(record["index"])), str(record["species"]))
            self._known = known
        return self._known

    def known(self, request_id: str, index: int) -> str | None:
        with self._lock:
            return self._index().get((request_id, index))

    def record(self, labels: Sequence[Label], predicted: Sequence[str | None]) -> list[bool]:
        """Write the new labels (all or none); per label, whether it was new. Raises LabelConflict."""
        with self._lock:
            known = self._index()
            conflicts = [
                (label, known[label.key]) for label in labels if known.get(label.key, label.species) != label.species
            ]
            seen: dict[tuple[str, int], str] = {}
            for label in labels:  # two different labels for one flower inside the same batch
                if seen.setdefault(label.key, label.species) != label.species:
                    conflicts.append((label, seen[label.key]))
            if conflicts:
                raise LabelConflict(conflicts)
            new = [label.key not in known for label in labels]
            now = time.time()
            lines = b"".join(
                orjson.dumps(
                    {
                        "request_id": label.request_id,
                        "index": label.index,
                        "species": label.species,
                        "received_at": now,
                        "predicted": guess,
                    }
                )
                + b"\n"
                for label, guess, is_new in zip(labels, predicted, new, strict=True)
                if is_new
            )
            if lines:
                self.folder.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(lines)
                    while view:
                        view = view[os.write(descriptor, view) :]
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
                for label, is_new in zip(labels, new, strict=True):
                    if is_new:
                        known[label.key] = label.species
            return new


class RateLimiter:
    """A token bucket per source: `rate` labels per second, bursts up to `burst`. Bounded in sources."""

    def __init__(self, rate: float, burst: float, max_sources: int = 10_000) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, source: str, cost: int) -> float:
        """0 when `cost` labels may pass now, else the seconds to wait (for Retry-After)."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.pop(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            wait = 0.0 if tokens >= cost else (min(cost, self.burst) - tokens) / self.rate
            self._buckets[source] = (tokens - cost if wait == 0 else tokens, now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        return wait


def authorized(header: str | None, token: str | None) -> bool:
    """Open when no token is configured; else `Authorization: Bearer <token>`, compared in constant time."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@dataclass
class Feedback:
    """What the /feedback routes need: the store, what this process predicted lately, limits and metrics."""

    store: LabelStore
    recent: RecentPredictions
    limiter: RateLimiter
    token: str | None
    labelled: object  # prometheus Counter: iris_feedback_labels_total{predicted, actual, correct}
    rejected: object  # prometheus Counter: iris_feedback_rejected_total{reason}

    @classmethod
    def from_environment(cls, log_dir: Path, labelled: object, rejected: object) -> Feedback:
        rate = float(os.environ.get(RATE_ENV, DEFAULT_RATE))
        return cls(
            store=LabelStore(log_dir),
            recent=RecentPredictions(),
            limiter=RateLimiter(rate=rate, burst=max(1.0, 10 * rate)),
            token=os.environ.get(TOKEN_ENV) or None,
            labelled=labelled,
            rejected=rejected,
        )

    def accept(self, labels: Sequence[Label]) -> list[LabelAnswer]:
        """Record the labels (all or none) and count them; raises LabelConflict."""
        predicted = [self.recent.predicted(label.request_id, label.index) for label in labels]
        try:
            new = self.store.record(labels, predicted)
        except LabelConflict:
            self.rejected.labels(reason="conflict").inc()  # type: ignore[attr-defined]
            raise
        answers = []
        for label, guess, is_new in zip(labels, predicted, new, strict=True):
            correct = None if guess is None else guess == label.species
            if is_new:
                self.labelled.labels(  # type: ignore[attr-defined]
                    predicted=guess or "unknown",
                    actual=label.species,
                    correct="unknown" if correct is None else str(correct).lower(),
                ).inc()
            answers.append(
                LabelAnswer(
                    request_id=label.request_id,
                    index=label.index,
                    species=label.species,
                    recorded=is_new,
                    predicted=guess,
                    correct=correct,
                )
            )
        return answers
