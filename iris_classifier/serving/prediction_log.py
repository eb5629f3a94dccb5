"""The prediction log: every classified flower, recorded through BentoML's monitoring API (`bentoml.monitor`).

Records land as JSON lines in BentoML's own layout (iris_classifier.data.production_log, where readers find it),
`$IRIS_MONITOR_DIR/iris_predictions/data/data.<host>.<worker>.log` (schema beside it in `schema/`), one line
per flower: the four measurements, species, one probability per species, model version, and BentoML's
`timestamp`, `request_id`, `trace_id`. The request id is the one the service's answer carries (a batch's
flowers share it, in request order). `IRIS_PREDICTION_LOG=0` turns the log off (for A/B benchmarks).

BentoML's DefaultMonitor writes every record through `logging` with a flush per line, on the request
path. `BufferedMonitor` keeps the same layout and fields but only queues the record there; a
background thread writes the queue every `flush_seconds` (or sooner once `flush_records` wait), so a
request pays for an append, not for JSON and a write. The queue is bounded (`max_pending` records): when the
writer falls behind that far, new records are dropped, never waited for, and counted in
`iris_prediction_log_dropped_total{reason="queue_full"}` (records that cannot be written: reason "unwritable").
The first record goes through `bentoml.monitor`, which makes the monitor (or finds the one made before under
that name) and teaches it the columns; from then on a flower is queued as one tuple and a batch as its
columns, without bentoml.monitor's per-call machinery (~5 us instead of ~40 us per request).
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import datetime as dt
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import bentoml
import numpy as np
import orjson
from bentoml.monitoring import MonitorBase
from prometheus_client import Counter

from iris_classifier.data.production_log import MONITOR_NAME, monitor_dir
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.serving import bentoml_compat

SWITCH_ENV = "IRIS_PREDICTION_LOG"
PROBABILITY_COLUMNS = tuple(f"probability_{species}" for species in SPECIES)
# A record's columns in order, with the role and type BentoML's schema file gives each.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    *((name, "feature", "numerical") for name in FEATURES),
    ("species", "prediction", "categorical"),
    *((name, "prediction", "numerical") for name in PROBABILITY_COLUMNS),
    ("model_version", "prediction", "categorical"),
)
ROW_KEYS = tuple(name for name, _, _ in COLUMNS)

logger = logging.getLogger(__name__)
Entry = TypeVar("Entry")

# Records queued for the writer at most: ~10 full batches, ~7 MB as batch columns (~34 MB as single flowers).
MAX_PENDING_RECORDS = 100_000
# Records the writer turns into JSON lines at once: one full batch, ~12 MB of transient pieces and lines.
WRITE_CHUNK_RECORDS = 10_000
dropped_total = Counter(
    name="iris_prediction_log_dropped_total",
    documentation="Prediction log records (flowers) dropped, by reason: queue_full (the writer fell more than "
    "MAX_PENDING_RECORDS behind; the request never waits), unwritable (the log's folder cannot be written)",
    labelnames=["reason"],
)
for _reason in ("queue_full", "unwritable"):  # at 0 from the start: increase() never counts a first sample
    dropped_total.labels(reason=_reason)

# The id of the record this log is logging in a `bentoml.monitor` block (MonitorBase hands export_data the
# values only); per thread and task, as two first records may be logged at once.
_RECORD_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("record_request_id", default=None)


NUMPY_AS_JSON = orjson.OPT_SERIALIZE_NUMPY  # an array's float64 is written exactly as the same Python float


def encoded_column(values: Any) -> list[bytes]:
    """Each value as JSON, from one orjson call: a list's (or an array's) items split at its commas.

    Numbers, species and versions hold no comma, so the split yields one piece per value; when a value
    does (a string with a comma, a list), the count tells, and that column is encoded value by value.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind not in "fiub":
        values = values.tolist()  # object or string arrays: as Python values
    pieces = orjson.dumps(values, option=NUMPY_AS_JSON)[1:-1].split(b",")
    if len(pieces) == len(values) and len(values):
        return pieces
    return [orjson.dumps(value, option=NUMPY_AS_JSON) for value in values]


def json_lines(keys: Sequence[str], columns: Sequence[Sequence[Any]], tails: list[bytes]) -> bytes:
    """`{"key": value, ...}` lines for rows given as columns, each row closed by its own tail (`,"..":..}\\n`).

    A column is a list of chunks (lists or arrays) that together hold one value per row. The same bytes
    as `orjson.dumps(dict(...))` per row, but built column-wise: 10,000 flowers cost the writer thread
    (and the GIL) ~15 ms instead of ~50 ms for a dict and a dumps per row.
    """
    rows = len(tails)
    stride = 2 * len(keys) + 1  # per column: its key, its value; then the row's tail
    flat: list[bytes] = [b""] * (rows * stride)
    for number, (key, chunks) in enumerate(zip(keys, columns, strict=True)):
        flat[2 * number :: stride] = [(b"," if number else b"{") + orjson.dumps(key) + b":"] * rows
        if len(chunks) == 1:  # a batch request on its own: its pieces as they come (no copy of 10,000)
            flat[2 * number + 1 :: stride] = encoded_column(chunks[0])
        else:
            flat[2 * number + 1 :: stride] = [piece for chunk in chunks for piece in encoded_column(chunk)]
    flat[stride - 1 :: stride] = tails
    return b"".join(flat)


def groups(queue: collections.deque[Entry], limit: int, size: Callable[[Entry], int]) -> Iterator[list[Entry]]:
    """The queue's entries in order, popped in groups of at most `limit` by `size` (an entry larger alone)."""
    while queue:
        group, total = [], 0
        while queue and (not group or total + size(queue[0]) <= limit):
            group.append(queue.popleft())
            total += size(group[-1])
        yield group


def _records(entry: tuple[float, str, int, Any]) -> int:
    """Records in a queued entry: a row tuple is one, columns hold one per value."""
    data = entry[3]
    return 1 if type(data) is tuple else len(data[0])


class BufferedMonitor(MonitorBase[Any]):
    """BentoML's DefaultMonitor files and record fields, written in batches by a background thread."""

    PRESERVED_COLUMNS = (COLUMN_TIME, COLUMN_RID, COLUMN_TID) = ("timestamp", "request_id", "trace_id")

    def __init__(
        self,
        name: str,
        log_path: str,
        flush_records: int = 1024,
        flush_seconds: float = 1.0,
        max_bytes: int = 64 * 2**20,
        backup_count: int = 5,
        max_pending: int = MAX_PENDING_RECORDS,
        **_: Any,
    ) -> None:
        super().__init__(name)
        # host and worker in the name: replicas sharing one volume (a ReadWriteMany claim) never share a file
        worker = f"{socket.gethostname()}.{bentoml.server_context.worker_index or 0}"
        self.data_path = Path(log_path) / name / "data" / f"data.{worker}.log"
        self.schema_path = Path(log_path) / name / "schema" / f"schema.{worker}.log"
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.keys: tuple[str, ...] | None = None  # the columns, in order, once the first record taught them
        # (timestamp, request id, trace id, a row tuple or a list of columns) per request, `queued` records in all,
        # at most `max_pending`; the queue lock is held for an append, or for the writer to take the whole queue.
        self.pending: collections.deque[tuple[float, str, int, Any]] = collections.deque()
        self.queued = 0
        self.max_pending = max_pending
        self.queue_lock = threading.Lock()
        self.dropped_full = 0  # records refused because the queue was full
        self.write_lock = threading.Lock()
        self.wake = threading.Event()
        self.failed = False
        self.written = 0
        self.dropped = 0  # records taken from the queue but not written (the log cannot be written)
        thread = threading.Thread(target=self._run, args=(weakref.ref(self),), name="prediction-log", daemon=True)
        thread.start()
        atexit.register(self.flush)

    # -- what MonitorBase calls, for records logged in a `bentoml.monitor` block -----------------------

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        self.keys = tuple(columns_schema)
        record = {
            "meta_data": {
                "bento_name": bentoml.server_context.bento_name,
                "bento_version": bentoml.server_context.bento_version,
            },
            "columns": list(columns_schema.values()),
        }
        try:
            self.schema_path.parent.mkdir(parents=True, exist_ok=True)
            with self.schema_path.open("ab") as schema:
                schema.write(orjson.dumps(record) + b"\n")
        except OSError as error:
            self._give_up(error)

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        """A record from a `bentoml.monitor` block, queued under PredictionLog's request id (else the context's)."""
        lengths = sorted({len(values) for values in datas.values()})
        if len(lengths) != 1:  # MonitorBase means to refuse this but does not; it would stop the writer
            logger.error("prediction log: a record's columns differ in length (%s); dropped", lengths)
            return
        if tuple(datas) != self.keys:
            logger.error("prediction log: a record's columns %s are not the log's %s; dropped", tuple(datas), self.keys)
            return
        request_id = _RECORD_REQUEST_ID.get() or bentoml_compat.request_id()
        self.queue_columns([list(values) for values in datas.values()], request_id)

    # -- the request path, once the columns are known -----------------------------------------------

    def queue_row(self, row: tuple[Any, ...], request_id: str) -> None:
        """One record as a tuple in `keys` order."""
        self._queue(row, 1, request_id)

    def queue_columns(self, columns: list[Sequence[Any]], request_id: str) -> None:
        """Records as columns in `keys` order (lists or 1-D arrays of one length), queued as they are: the
        writer encodes each with one orjson call."""
        self._queue(columns, len(columns[0]), request_id)

    def _queue(self, data: tuple[Any, ...] | list[Sequence[Any]], records: int, request_id: str) -> None:
        # The trace id is read here, on the request's path; the time is formatted by the writer thread.
        entry = (time.time(), request_id, bentoml_compat.trace_id(), data)
        with self.queue_lock:
            full = self.queued + records > self.max_pending
            if not full:
                self.pending.append(entry)
                self.queued += records
        if full:
            self.dropped_full += records
            dropped_total.labels(reason="queue_full").inc(records)
            self.wake.set()
            return
        if self.queued >= self.flush_records:
            self.wake.set()

    # -- the writer ---------------------------------------------------------------------------------

    @staticmethod
    def _run(ref: weakref.ref[BufferedMonitor]) -> None:
        while (monitor := ref()) is not None:
            wake, seconds = monitor.wake, monitor.flush_seconds
            monitor.flush()
            del monitor  # no strong reference while asleep
            wake.wait(seconds)
            wake.clear()

    def flush(self) -> int:
        """Write what is queued, in order, WRITE_CHUNK_RECORDS at a time (what a write builds stays a few MB, and
        the GIL is let go between writes); returns the number of records written."""
        with self.write_lock:
            with self.queue_lock:  # the whole queue at once: requests append to a fresh one meanwhile
                taken, self.pending, self.queued = self.pending, collections.deque(), 0
            return sum(self._write(group) for group in groups(taken, WRITE_CHUNK_RECORDS, _records))

    def _write(self, group: list[tuple[float, str, int, Any]]) -> int:
        """Write queued entries as JSON lines, in one write; returns the number of records written."""
        keys = self.keys or ()
        columns: list[list[Any]] = [[] for _ in keys]  # per column, the value chunks of consecutive records
        rows: list[tuple[Any, ...]] = []  # single flowers since the last batch, transposed in one go
        tails: list[bytes] = []  # per line, its `,"timestamp":..,"request_id":..,"trace_id":..}\n`
        seconds: dict[int, str] = {}  # "2026-11-27T23:31:58" once per second: isoformat per record cost half

        def rows_to_columns() -> None:
            for chunks, values in zip(columns, zip(*rows, strict=True), strict=True):
                chunks.append(values)
            rows.clear()

        for stamp, request_id, trace_id, data in group:
            whole = int(stamp)
            if whole not in seconds:
                seconds[whole] = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            when = f"{seconds[whole]}.{int((stamp - whole) * 1e6):06d}+00:00"
            extra = {self.COLUMN_TIME: when, self.COLUMN_RID: request_id, self.COLUMN_TID: str(trace_id)}
            tail = b"," + orjson.dumps(extra)[1:] + b"\n"
            if type(data) is tuple:
                rows.append(data)
                tails.append(tail)
            else:
                if rows:
                    rows_to_columns()
                for chunks, values in zip(columns, data, strict=True):
                    chunks.append(values)
                tails.extend([tail] * len(data[0]))
        if rows:
            rows_to_columns()
        count = len(tails)
        if self.failed:
            self._drop_unwritable(count)
            return 0
        try:
            lines = json_lines(keys, columns, tails)
            self.data_path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_full(len(lines))
            with self.data_path.open("ab") as data_file:  # one write per group: whole lines, O_APPEND
                data_file.write(lines)
        except OSError as error:
            self._give_up(error)
            self._drop_unwritable(count)
            return 0
        self.written += count
        return count

    def _rotate_if_full(self, incoming: int = 0) -> None:
        """Rotate before a write would take the file past max_bytes: each file holds at most max_bytes (or one
        write), so the log's files together stay within (backup_count + 1) x max_bytes, as a tmpfs needs."""
        size = self.data_path.stat().st_size if self.data_path.exists() else 0
        if size == 0 or size + incoming <= self.max_bytes:
            return
        for number in range(self.backup_count - 1, 0, -1):
            older = self.data_path.with_name(f"{self.data_path.name}.{number}")
            if older.exists():
                older.replace(self.data_path.with_name(f"{self.data_path.name}.{number + 1}"))
        self.data_path.replace(self.data_path.with_name(f"{self.data_path.name}.1"))

    def _drop_unwritable(self, count: int) -> None:
        self.dropped += count
        dropped_total.labels(reason="unwritable").inc(count)

    def _give_up(self, error: OSError) -> None:
        """An unwritable log never fails a request: say so once, then drop records."""
        if not self.failed:
            logger.error("prediction log: cannot write under %s (%s); records are dropped", self.data_path, error)
        self.failed = True


class PredictionLog:
    """What the service calls once per answer: one record per classified flower, under the answer's request id."""

    def __init__(
        self,
        model_version: str,
        log_dir: Path | None = None,
        enabled: bool | None = None,
        name: str = MONITOR_NAME,
        **options: Any,
    ) -> None:
        self.model_version = model_version
        self.log_dir = log_dir or monitor_dir()
        self.enabled = os.environ.get(SWITCH_ENV, "1") != "0" if enabled is None else enabled
        self.name = name
        self.options = {"log_path": str(self.log_dir), **options}  # BufferedMonitor's keyword arguments
        self._monitor: BufferedMonitor | None = None  # once the first record went through bentoml.monitor

    def record(
        self,
        measurements: Sequence[float],
        species: str,
        probabilities: Sequence[float],
        request_id: str | None = None,
    ) -> None:
        """One flower (measurements in FEATURES order, probabilities in SPECIES order); `request_id` defaults
        to the request in context's (bentoml_compat.request_id)."""
        if not self.enabled:
            return
        row = (*measurements, species, *probabilities, self.model_version)
        if len(row) != len(ROW_KEYS):
            raise ValueError(f"a record has {len(ROW_KEYS)} values ({', '.join(ROW_KEYS)}); got {len(row)}")
        request_id = request_id or bentoml_compat.request_id()
        if self._monitor is None:
            self._first_record(row, request_id)
        else:
            self._monitor.queue_row(row, request_id)

    def record_batch(
        self, rows: Any, species: Sequence[str], probabilities: Any, request_id: str | None = None
    ) -> None:
        """Many flowers of one request: rows and probabilities are 2-D arrays (flowers x FEATURES / SPECIES).

        Each column is queued as an array (one transposed copy each, owned by the log), not as Python
        floats: for 10,000 flowers that is ~0.3 ms of the request's time instead of ~6 ms.
        """
        if not self.enabled or not len(species):
            return
        count = len(species)
        if count == 1:  # one flower (/classify): a row of plain floats costs less than four column arrays
            self.record(
                np.asarray(rows).ravel().tolist(), species[0], np.asarray(probabilities).ravel().tolist(), request_id
            )
            return
        features = np.ascontiguousarray(np.asarray(rows, dtype=np.float64).T)
        chances = np.ascontiguousarray(np.asarray(probabilities, dtype=np.float64).T)
        if features.shape != (len(FEATURES), count) or chances.shape != (len(SPECIES), count):
            raise ValueError(
                f"a batch of {count} species needs rows of shape ({count}, {len(FEATURES)}) and probabilities of "
                f"shape ({count}, {len(SPECIES)}); got {features.T.shape} and {chances.T.shape}"
            )
        request_id = request_id or bentoml_compat.request_id()
        start = 0
        if self._monitor is None:  # the first flower teaches the columns; the rest are queued as usual
            first = (*features[:, 0].tolist(), species[0], *chances[:, 0].tolist(), self.model_version)
            self._first_record(first, request_id)
            start = 1
        if self._monitor is None or start == count:
            return
        columns: list[Sequence[Any]] = [
            *features[:, start:],
            list(species[start:]),
            *chances[:, start:],
            [self.model_version] * (count - start),
        ]
        self._monitor.queue_columns(columns, request_id)

    def _first_record(self, row: tuple[Any, ...], request_id: str) -> None:
        """The first record goes through `bentoml.monitor`, which makes the monitor (BentoML's monitoring
        config applies: switched off, it hands out a no-op monitor, and the log goes off too)."""
        token = _RECORD_REQUEST_ID.set(request_id)
        try:
            with bentoml.monitor(self.name, monitor_class=BufferedMonitor, monitor_options=self.options) as monitor:
                for (name, role, data_type), value in zip(COLUMNS, row, strict=True):
                    monitor.log(value, name, role, data_type)
        finally:
            _RECORD_REQUEST_ID.reset(token)
        if isinstance(monitor, BufferedMonitor) and monitor.keys == ROW_KEYS:
            self._monitor = monitor
        else:
            logger.warning("prediction log: BentoML gave %r a %s; the log is off", self.name, type(monitor).__name__)
            self.enabled = False

    @property
    def dropped(self) -> int:
        """Records that could not be written (an unwritable folder) and were dropped."""
        return self._monitor.dropped if self._monitor is not None else 0

    @property
    def dropped_full(self) -> int:
        """Records dropped because the writer's queue was full."""
        return self._monitor.dropped_full if self._monitor is not None else 0

    def flush(self) -> int:
        """Write what is queued now (tests, shutdown); returns the number of records written."""
        return self._monitor.flush() if self._monitor is not None else 0
