"""The prediction log: every classified flower, recorded through BentoML's monitoring API (`bentoml.monitor`).

Records land as JSON lines in BentoML's own layout,
`$IRIS_MONITOR_DIR/iris_predictions/data/data.<worker>.log` (schema beside it in `schema/`), one line
per flower: the four measurements, species, one probability per species, model version, and BentoML's
`timestamp`, `request_id`, `trace_id`. `IRIS_PREDICTION_LOG=0` turns the log off (for A/B benchmarks).

BentoML's DefaultMonitor writes every record through `logging` with a flush per line, on the request
path. `BufferedMonitor` keeps the same layout and fields but only queues the record there; a
background thread writes the queue every `flush_seconds` (or sooner once `flush_records` wait), so a
request pays for a few appends, not for JSON and a write.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import datetime as dt
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import orjson

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.project.paths import ROOT
from iris_classifier.serving.bentoml_compat import MON_DATAS_VAR, MonitorBase, server_context, trace_context

MONITOR_NAME = "iris_predictions"
LOG_DIR_ENV = "IRIS_MONITOR_DIR"
DEFAULT_LOG_DIR = ROOT / ".monitor"  # gitignored
SWITCH_ENV = "IRIS_PREDICTION_LOG"
PROBABILITY_COLUMNS = tuple(f"probability_{species}" for species in SPECIES)
ROW_KEYS = (*FEATURES, "species", *PROBABILITY_COLUMNS, "model_version")  # a record's columns, in order

logger = logging.getLogger(__name__)


def monitor_dir() -> Path:
    """Where the prediction log (and the drift check's last verdict) lives."""
    return Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)


def data_files(log_dir: Path, name: str = MONITOR_NAME) -> list[Path]:
    """The log's data files, current and rotated, oldest first."""
    folder = log_dir / name / "data"
    return sorted(folder.glob("data.*.log*"), key=lambda path: (path.stat().st_mtime, path.name))


class Column:
    """One request's whole column (a list, or a 1-D float or int array), queued as it is by `log_batch`:
    no per-value work on the request path; the writer encodes it with one orjson call."""

    __slots__ = ("values",)

    def __init__(self, values: Any) -> None:
        self.values = values


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


def column_chunk(values: collections.deque[Any]) -> Any:
    """What a record holds for one column: one Column from log_batch, or single values from log."""
    return values[0].values if len(values) == 1 and type(values[0]) is Column else values


def as_single_values(values: collections.deque[Any]) -> collections.deque[Any]:
    """A column that mixes log and log_batch calls in one record holds plain values only."""
    if values and type(values[0]) is Column:  # a Column is always a deque's only element
        chunk = values.popleft().values
        values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
    return values


class LineRun:
    """Consecutive records with the same columns, gathered by the writer: value chunks per column (rows
    are transposed in one go when a column record follows, or at the end) and one tail per row."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.columns: list[list[Any]] = [[] for _ in keys]
        self.rows: list[tuple[Any, ...]] = []
        self.tails: list[bytes] = []

    def add_row(self, row: tuple[Any, ...], tail: bytes) -> None:
        self.rows.append(row)
        self.tails.append(tail)

    def add_columns(self, datas: dict[str, collections.deque[Any]], tail: bytes) -> None:
        self._rows_to_columns()
        for chunks, values in zip(self.columns, datas.values(), strict=True):
            chunk = column_chunk(values)
            chunks.append(list(values) if chunk is values else chunk)
        self.tails.extend([tail] * len(self.columns[0][-1]))

    def lines(self) -> bytes:
        self._rows_to_columns()
        return json_lines(self.keys, self.columns, self.tails)

    def _rows_to_columns(self) -> None:
        if self.rows:
            for chunks, values in zip(self.columns, zip(*self.rows, strict=True), strict=True):
                chunks.append(values)
            self.rows = []


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
        max_pending: int = 1_000_000,
        **_: Any,
    ) -> None:
        super().__init__(name)
        worker = server_context.worker_index or 0
        self.data_path = Path(log_path) / name / "data" / f"data.{worker}.log"
        self.schema_path = Path(log_path) / name / "schema" / f"schema.{worker}.log"
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        # (timestamp, request id, trace id, column names, a row tuple or the record's columns) per request;
        # deque appends and pops are thread-safe.
        self.pending: collections.deque[tuple[float, Any, Any, tuple[str, ...], Any]] = collections.deque(
            maxlen=max_pending
        )
        self.queued = 0  # records queued since the last flush (a hint; the flush reads the deque)
        self.write_lock = threading.Lock()
        self.wake = threading.Event()
        self.failed = False
        self.written = 0
        thread = threading.Thread(target=self._run, args=(weakref.ref(self),), name="prediction-log", daemon=True)
        thread.start()
        atexit.register(self.flush)

    # -- the request path ---------------------------------------------------------------------------

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        """MonitorBase checks names, roles and types while the schema is being learnt; after it, just append."""
        if self.columns_schema is None:
            super().log(data, name, role, data_type)
        else:
            as_single_values(MON_DATAS_VAR.get()[name]).append(data)  # type: ignore[index]

    def log_batch(self, data_batch: Iterable[Any], name: str, role: str, data_type: str) -> None:
        """A column at once, queued whole (a Column); MonitorBase checks the first one, value by value."""
        values = data_batch if isinstance(data_batch, list | np.ndarray) else list(data_batch)
        if not len(values):
            return
        column = MON_DATAS_VAR.get()[name]  # type: ignore[index]
        if self.columns_schema is None or column:
            plain = values.tolist() if isinstance(values, np.ndarray) else values
            self.log(plain[0], name, role, data_type)
            column.extend(plain[1:])
        else:
            column.append(Column(values))

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        record = {
            "meta_data": {"bento_name": server_context.bento_name, "bento_version": server_context.bento_version},
            "columns": list(columns_schema.values()),
        }
        try:
            self.schema_path.parent.mkdir(parents=True, exist_ok=True)
            with self.schema_path.open("ab") as schema:
                schema.write(orjson.dumps(record) + b"\n")
        except OSError as error:
            self._give_up(error)

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        lengths = {len(column_chunk(values)) for values in datas.values()}
        if len(lengths) != 1:  # MonitorBase means to refuse this but does not; it would stop the writer
            logger.error("prediction log: a record's columns differ in length (%s); dropped", sorted(lengths))
            return
        self._queue(tuple(datas), datas, lengths.pop())

    def queue_row(self, keys: tuple[str, ...], row: tuple[Any, ...]) -> None:
        """One record as a tuple in `keys` order, for columns the schema already holds: what export_data
        receives after nine `log` calls, without building their deques (~5 us instead of ~35 us here)."""
        self._queue(keys, row, 1)

    def _queue(self, keys: tuple[str, ...], data: Any, records: int) -> None:
        # The request's ids are read here, on its path; the time is formatted by the writer thread.
        self.pending.append((time.time(), trace_context.request_id, trace_context.trace_id, keys, data))
        self.queued += records
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
        """Write what is queued; returns the number of records written."""
        with self.write_lock:
            runs: list[LineRun] = []  # consecutive records with the same columns
            seconds: dict[int, str] = {}  # "2026-11-27T23:31:58" once per second: isoformat per record cost half
            while self.pending:
                stamp, request_id, trace_id, keys, data = self.pending.popleft()
                whole = int(stamp)
                if whole not in seconds:
                    seconds[whole] = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
                when = f"{seconds[whole]}.{int((stamp - whole) * 1e6):06d}+00:00"
                extra = {self.COLUMN_TIME: when, self.COLUMN_RID: str(request_id), self.COLUMN_TID: str(trace_id)}
                tail = b"," + orjson.dumps(extra)[1:] + b"\n"
                if not runs or runs[-1].keys != keys:
                    runs.append(LineRun(keys))
                if type(data) is tuple:
                    runs[-1].add_row(data, tail)
                else:
                    runs[-1].add_columns(data, tail)
            self.queued = 0
            chunks = [run.lines() for run in runs]
            count = sum(len(run.tails) for run in runs)
            if not count or self.failed:
                return 0
            try:
                self.data_path.parent.mkdir(parents=True, exist_ok=True)
                self._rotate_if_full()
                with self.data_path.open("ab") as data:  # one write per flush: whole lines, O_APPEND
                    data.write(b"".join(chunks))
            except OSError as error:
                self._give_up(error)
                return 0
            self.written += count
            return count

    def _rotate_if_full(self) -> None:
        if not self.data_path.exists() or self.data_path.stat().st_size < self.max_bytes:
            return
        for number in range(self.backup_count - 1, 0, -1):
            older = self.data_path.with_name(f"{self.data_path.name}.{number}")
            if older.exists():
                older.replace(self.data_path.with_name(f"{self.data_path.name}.{number + 1}"))
        self.data_path.replace(self.data_path.with_name(f"{self.data_path.name}.1"))

    def _give_up(self, error: OSError) -> None:
        """An unwritable log never fails a request: say so once, then drop records."""
        if not self.failed:
            logger.error("prediction log: cannot write under %s (%s); records are dropped", self.data_path, error)
        self.failed = True


class PredictionLog:
    """What the service calls once per answer: one record per classified flower."""

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
        self._monitor: MonitorBase[Any] | None = None
        self._rows_known = False  # set once the first record has taught the monitor ROW_KEYS

    @contextlib.contextmanager
    def recording(self) -> Iterator[MonitorBase[Any]]:
        """`with bentoml.monitor(...)` the first time; then the same monitor's start_record/stop_record.

        Entering `bentoml.monitor` on every request spent ~40% of the log's cost resolving its injected
        defaults (simple_di + inspect.bind); its body is exactly start_record / yield / stop_record.
        """
        if self._monitor is None:
            with bentoml.monitor(self.name, monitor_class=BufferedMonitor, monitor_options=self.options) as monitor:
                yield monitor
            self._monitor = monitor
            schema = monitor.columns_schema or {}
            self._rows_known = isinstance(monitor, BufferedMonitor) and tuple(schema) == ROW_KEYS
            return
        self._monitor.start_record()
        yield self._monitor
        self._monitor.stop_record()

    def record(self, measurements: Sequence[float], species: str, probabilities: Sequence[float]) -> None:
        """One flower (measurements in FEATURES order, probabilities in SPECIES order)."""
        if not self.enabled:
            return
        if self._rows_known:  # the monitor holds these columns, in this order: queue the row as it is
            row = (*measurements, species, *probabilities, self.model_version)
            if len(row) != len(ROW_KEYS):
                raise ValueError(f"a record has {len(ROW_KEYS)} values ({', '.join(ROW_KEYS)}); got {len(row)}")
            self._monitor.queue_row(ROW_KEYS, row)  # type: ignore[union-attr]
            return
        with self.recording() as monitor:
            for name, value in zip(FEATURES, measurements, strict=True):
                monitor.log(value, name, "feature", "numerical")
            monitor.log(species, "species", "prediction", "categorical")
            for name, value in zip(PROBABILITY_COLUMNS, probabilities, strict=True):
                monitor.log(value, name, "prediction", "numerical")
            monitor.log(self.model_version, "model_version", "prediction", "categorical")

    def record_batch(self, rows: Any, species: Sequence[str], probabilities: Any) -> None:
        """Many flowers: rows and probabilities are 2-D arrays (flowers x FEATURES / SPECIES).

        Each column is queued as an array (one transposed copy each, owned by the log), not as Python
        floats: for 10,000 flowers that is ~0.3 ms of the request's time instead of ~6 ms.
        """
        if not self.enabled or not len(species):
            return
        features = np.ascontiguousarray(np.asarray(rows, dtype=np.float64).T)
        chances = np.ascontiguousarray(np.asarray(probabilities, dtype=np.float64).T)
        with self.recording() as monitor:
            for name, column in zip(FEATURES, features, strict=True):
                monitor.log_batch(column, name, "feature", "numerical")
            monitor.log_batch(list(species), "species", "prediction", "categorical")
            for name, column in zip(PROBABILITY_COLUMNS, chances, strict=True):
                monitor.log_batch(column, name, "prediction", "numerical")
            monitor.log_batch([self.model_version] * len(species), "model_version", "prediction", "categorical")

    def flush(self) -> int:
        """Write what is queued now (tests, shutdown); 0 when nothing was recorded yet."""
        return self._monitor.flush() if isinstance(self._monitor, BufferedMonitor) else 0
