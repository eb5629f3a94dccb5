"""Admission control: how many flowers this worker may hold in flight (a budget from the pod's memory limit), and
the middleware that refuses at once, with 503 and Retry-After, a many-flower request that would go over it.

Why flowers and not requests: BentoML's `traffic.max_concurrency` counts requests, and a 10,000-flower batch
holds ~10,000 times the memory of a one-flower request (its body, the parsed flowers, one answer object per
flower, the JSON answer, the prediction log's columns). Requests to the many-flower routes (/classify_batch,
V2 infer) are charged, before their body is read, the most flowers a body of that size can carry
(Content-Length over the route's densest valid encoding of a flower, at most MAX_BATCH_FLOWERS; a chunked
body, whose size is not known, the most), and the charge is held until the answer is sent. A request that
would take the flowers in flight over the budget is refused; so is any batch while the pod's working set is
already near its limit (what the budget's model did not foresee: fragmentation, the web UI's build, files in
memory). Nothing of a refused request has been read or processed. Its Retry-After is how long the flowers
already in flight take to be answered at the rate of the last RATE_WINDOW_SECONDS (at least 1 s, at most the
30 s request timeout): under a long flood clients come back when there is room, instead of every second
with a body the server must read and drop (half the worker's time under a 320-client flood).

One-flower requests keep flowing: batches may fill the budget only up to a small reserve that small requests
can still use, and an admitted batch waits for one of a few execution slots (one per CPU the pod may use:
its cgroup's CPU quota) before its body is read, holding the slot until its answer starts. So at most that
many batches parse, classify and build answers at once, and the event loop that answers one-flower requests
competes for the GIL with one batch thread, not with dozens; a waiting batch holds its headers only (its
body waits in the socket).

The budget (`PodMemory.budget`): the cgroup's memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`;
no limit: the host's memory), less what the pod uses when the worker is ready, less the prediction log's
files when they live in memory (tmpfs: Docker's `--tmpfs`, an `emptyDir` with `medium: Memory`), less a
headroom, divided by the memory one flower in flight costs (measured by `make bench-memory`) and by the
number of workers. Environment: IRIS_ADMISSION_FLOWERS sets the budget, IRIS_FLOWER_COST_BYTES the cost,
IRIS_BATCH_SLOTS the execution slots, IRIS_ADMISSION=off turns refusing and the slots off (the in-flight gauge
still counts; to reproduce what happens without them).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import Gauge

from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS
from iris_classifier.serving.middleware import MAX_BODY_BYTES, RETRY_AFTER_SECONDS, requests_shed_total, send_json

logger = logging.getLogger("bentoml.iris_classifier.admission")  # under "bentoml": in the server's log

SWITCH_ENV = "IRIS_ADMISSION"  # "off": nothing is refused
BUDGET_ENV = "IRIS_ADMISSION_FLOWERS"
SLOTS_ENV = "IRIS_BATCH_SLOTS"
COST_ENV = "IRIS_FLOWER_COST_BYTES"
LOG_MEMORY_ENV = "IRIS_PREDICTION_LOG_MAX_MB"  # the prediction log's files, all rotations together

# Memory one admitted flower may cost the pod. Measured in the production image (docs/benchmarks.md): a batch
# waiting for its slot ~0.04 kB per flower (`make bench-memory`, its body still unread), one read and waiting
# for the model ~0.15 kB (admission off), and under the 320-client flood ~0.5 kB per admitted flower (the
# executing batch, answers being sent, refused bodies being drained). 2 kB keeps 4x of that for clients slow
# to read their answers (1.8 MB per 10,000 flowers, held until sent) and the allocator's fragmentation.
FLOWER_COST_BYTES = 2048
# Batches may fill the budget only up to this many flowers short of it: what one-row requests can still use.
SMALL_RESERVE_FLOWERS = 2_000
SMALL_REQUEST_FLOWERS = 64  # a request charged at most this many flowers is small
NO_LIMIT_MAX_FLOWERS = 1_000_000  # without a memory limit: generous, but finite
MIN_HEADROOM_BYTES = 64 * 2**20
# The prediction log's files by default (BufferedMonitor: 64 MiB, 5 rotations): on a memory-backed volume
# they get at most an eighth of the limit (LOG_MEMORY_SHARE).
LOG_FILE_BYTES, LOG_BACKUPS = 64 * 2**20, 5
LOG_MEMORY_SHARE = 8
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}
PRESSURE_READ_SECONDS = 0.1  # the working set is read at most this often (two small files)
RATE_WINDOW_SECONDS = 10  # answered flowers are counted per second over this many seconds, for Retry-After
MAX_RETRY_AFTER_SECONDS = 30  # the request timeout (traffic.timeout): no client is sent away for longer
# A client sent away for this long or longer would come back after the server has closed its idle connection
# (uvicorn's keep-alive timeout, 5 s), and a request sent just as the close comes meets a connection reset.
# Such a refusal reads and drops the body first and
# closes the connection itself ("Connection: close"), so the client opens a new one when it comes back.
CLOSE_FROM_SECONDS = 4
DRAIN_SECONDS = 5.0  # a body still not all in after this long is not waited for (the close may then reset)

# The densest valid encoding of one flower per route, in bytes: a body of N bytes carries at most N / this.
BATCH_FLOWER_BYTES = len('{"sepal_length":1,"sepal_width":1,"petal_length":1,"petal_width":1},')  # 68
V2_FLOWER_BYTES = 2 * len(FEATURES)  # "1,1,1,1," as a flat tensor

flowers_in_flight = Gauge(
    name="iris_admission_flowers_in_flight",
    documentation="Flowers of admitted many-flower requests (/classify_batch, V2 infer) not yet answered, summed "
    "over the pod's workers",
    multiprocess_mode="livesum",
)
batches_waiting = Gauge(
    name="iris_admission_batches_waiting",
    documentation="Admitted many-flower requests waiting for an execution slot (their body not read yet), summed "
    "over the pod's workers",
    multiprocess_mode="livesum",
)
budget_flowers = Gauge(
    name="iris_admission_budget_flowers",
    documentation="Flowers the pod's workers may hold in flight (the admission budget, from the memory limit); "
    "0 when admission is off",
    multiprocess_mode="livesum",
)


# ---- the pod's memory, as its cgroup and its mounts say ----


@dataclass(frozen=True)
class Cgroup:
    """The memory controller of this process's cgroup: v2 (unified) or v1's memory hierarchy."""

    directory: Path
    version: int

    @classmethod
    def find(cls, root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> Cgroup | None:
        try:
            lines = membership.read_text().splitlines()
        except OSError:
            lines = []
        if (root / "cgroup.controllers").exists():  # v2
            path = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
            for directory in (root / path.lstrip("/"), root):  # in a cgroup namespace, its root is ours
                if (directory / "memory.max").exists():
                    return cls(directory, 2)
            return None
        if (root / "memory").is_dir():  # v1
            path = next((line.split(":", 2)[2] for line in lines if ":memory:" in line), "/")
            for directory in (root / "memory" / path.lstrip("/"), root / "memory"):
                if (directory / "memory.limit_in_bytes").exists():
                    return cls(directory, 1)
        return None

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"

    def limit(self) -> int | None:
        """The limit in bytes; None for none (v2 "max"; v1 an unlimited value, at least the host's memory)."""
        text = (self.directory / self.limit_file).read_text().strip()
        if text == "max":
            return None
        value = int(text)
        return None if value >= psutil.virtual_memory().total else value

    def cpu_limit(self) -> float | None:
        """CPUs the cgroup's quota allows (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`); None for none."""
        if self.version == 2:
            quota, _, period = (self.directory / "cpu.max").read_text().partition(" ")
            return None if quota == "max" else int(quota) / int(period)
        parts = self.directory.parts  # v1: the cpu hierarchy beside the memory one, the same path below it
        mount = parts.index("memory")
        cpu, below = Path(*parts[:mount]) / "cpu", Path(*parts[mount + 1 :])
        for folder in (cpu / below, cpu):
            if (folder / "cpu.cfs_quota_us").exists():
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
        return None

    def working_set(self) -> int:
        """Usage less inactive file pages (what the kubelet calls the working set): what cannot be reclaimed soon."""
        usage_file, inactive = ("memory.current", "inactive_file") if self.version == 2 else (
            "memory.usage_in_bytes", "total_inactive_file"
        )  # fmt: skip
        usage = int((self.directory / usage_file).read_text())
        for line in (self.directory / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == inactive:
                return usage - int(value)
        return usage


def memory_backed(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Whether files under `path` live in memory (its mount is tmpfs or ramfs): they count toward the limit."""
    target = str(path.resolve())
    best, fstype = "", ""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields, _, rest = line.partition(" - ")
        mount_point = fields.split(" ")[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, rest.split(" ")[0]
    return fstype in MEMORY_FILESYSTEMS


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when there is none)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class Budget:
    """How many flowers one worker may hold in flight, and what that was derived from (all bytes)."""

    flowers: int | None  # None: refusing is off
    limit_bytes: int
    limit_source: str
    baseline_bytes: int
    log_bytes: int
    headroom_bytes: int
    flower_cost_bytes: int
    workers: int
    how: str
    slots: int = 1  # batches that may execute at once
    reserved_bytes: int = 0  # held for other work of the worker's: a shadow's queue and log (serving/shadow.py)

    def describe(self) -> str:
        mib = 2**20
        if self.flowers is None:
            return f"admission: off ({SWITCH_ENV}=off): nothing is refused; flowers in flight are still counted"
        derived = (
            f"({self.limit_bytes / mib:,.0f} MiB {self.limit_source} - {self.baseline_bytes / mib:,.0f} MiB in use "
            f"- {self.log_bytes / mib:,.0f} MiB prediction log in memory - {self.reserved_bytes / mib:,.0f} MiB "
            f"shadow - {self.headroom_bytes / mib:,.0f} MiB headroom) / {self.flower_cost_bytes:,} bytes per "
            f"flower / {self.workers} worker(s)"
        )
        return (
            f"admission: {self.flowers:,} flowers in flight per worker ({self.how}: {derived}); "
            f"{self.slots} batch(es) executing at once"
        )


def derive_flowers(*, limit: int, baseline: int, log_bytes: int, headroom: int, cost: int, workers: int) -> int:
    """What fits: the limit less what is in use, the log in memory and the headroom, per flower and per worker;
    at least one full batch (a pod too small even for that still serves them, one at a time)."""
    spare = limit - baseline - log_bytes - headroom
    return max(MAX_BATCH_FLOWERS, spare // cost // max(1, workers))


def headroom_for(limit: int) -> int:
    return max(MIN_HEADROOM_BYTES, limit // 10)


@dataclass(frozen=True)
class PodMemory:
    """The memory limit this worker lives under, and whether the prediction log's folder is in memory."""

    cgroup: Cgroup | None
    limit_bytes: int
    limit_source: str
    log_dir: Path
    log_in_memory: bool

    @classmethod
    def read(cls, log_dir: Path, cgroup: Cgroup | None = None) -> PodMemory:
        cgroup = cgroup or Cgroup.find()
        limit = cgroup.limit() if cgroup else None
        if limit is None:
            limit, source = psutil.virtual_memory().total, "host memory (no cgroup limit)"
        else:
            source = f"cgroup v{cgroup.version} {cgroup.limit_file}"
        return cls(cgroup, limit, source, log_dir, memory_backed(log_dir))

    def log_files_bytes(self) -> int:
        """All the prediction log's files together, rotations included: IRIS_PREDICTION_LOG_MAX_MB, else the
        default, and on a memory-backed volume at most an eighth of the limit."""
        configured = os.environ.get(LOG_MEMORY_ENV)
        if configured:
            return int(float(configured) * 2**20)
        default = LOG_FILE_BYTES * (LOG_BACKUPS + 1)
        return min(default, self.limit_bytes // LOG_MEMORY_SHARE) if self.log_in_memory else default

    def log_rotation(self) -> dict[str, int]:
        """The prediction log's rotation (BufferedMonitor's max_bytes and backup_count) within log_files_bytes."""
        return {"max_bytes": max(1, self.log_files_bytes() // (LOG_BACKUPS + 1)), "backup_count": LOG_BACKUPS}

    def working_set(self) -> int:
        """The pod's working set now (the cgroup's), or this server's resident memory without a cgroup."""
        if self.cgroup is not None:
            return self.cgroup.working_set()
        me = psutil.Process()
        parent = me.parent()
        processes = [me, *(parent.children() if parent else ())]
        return sum(process.memory_info().rss for process in {p.pid: p for p in processes}.values())

    def batch_slots(self, workers: int = 1) -> int:
        """Batches one worker may execute at once: IRIS_BATCH_SLOTS, else the CPUs of the cgroup's quota (else of the
        machine) shared by the workers, at least one."""
        if os.environ.get(SLOTS_ENV):
            return max(1, int(os.environ[SLOTS_ENV]))
        cpus = None
        if self.cgroup is not None:
            try:
                cpus = self.cgroup.cpu_limit()
            except (OSError, ValueError):
                cpus = None
        return max(1, int((cpus or os.cpu_count() or 1) / max(1, workers)))

    def budget(self, workers: int = 1, reserved_bytes: int = 0) -> Budget:
        """The budget, from what is in use now (call it once the models are loaded); `reserved_bytes`: what other
        work of the worker's may come to hold (a shadow's queue), kept out of it."""
        log_bytes = self.log_files_bytes() if self.log_in_memory else 0
        # files already in the log's folder are part of its bound, not of what the server uses
        in_use = self.working_set() - (folder_bytes(self.log_dir) if self.log_in_memory else 0)
        cost = int(os.environ.get(COST_ENV) or FLOWER_COST_BYTES)
        headroom = headroom_for(self.limit_bytes)
        common = {
            "limit_bytes": self.limit_bytes,
            "limit_source": self.limit_source,
            "baseline_bytes": in_use,
            "log_bytes": log_bytes,
            "headroom_bytes": headroom,
            "flower_cost_bytes": cost,
            "workers": workers,
            "slots": self.batch_slots(workers),
            "reserved_bytes": reserved_bytes,
        }
        if os.environ.get(SWITCH_ENV, "on").lower() in ("off", "0", "false"):
            return Budget(flowers=None, how="off", **common)
        if os.environ.get(BUDGET_ENV):
            return Budget(flowers=int(os.environ[BUDGET_ENV]), how=BUDGET_ENV, **common)
        flowers = derive_flowers(
            limit=self.limit_bytes,
            baseline=in_use + reserved_bytes * workers,  # each worker holds its own
            log_bytes=log_bytes,
            headroom=headroom,
            cost=cost,
            workers=workers,
        )
        if (self.cgroup is None or self.cgroup.limit() is None) and flowers > NO_LIMIT_MAX_FLOWERS:
            return Budget(flowers=NO_LIMIT_MAX_FLOWERS, how="no memory limit: capped, from", **common)
        return Budget(flowers=flowers, how="derived", **common)

    def pressure_check(self) -> Callable[[], bool] | None:
        """A cheap check (cached for PRESSURE_READ_SECONDS) that the working set is within half the headroom of
        the limit; None without a cgroup limit."""
        if self.cgroup is None or self.cgroup.limit() is None:
            return None
        cgroup, threshold = self.cgroup, self.limit_bytes - headroom_for(self.limit_bytes) // 2
        last = {"at": 0.0, "high": False}

        def under_pressure() -> bool:
            now = time.monotonic()
            if now - last["at"] >= PRESSURE_READ_SECONDS:
                try:
                    last["high"] = cgroup.working_set() >= threshold
                except (OSError, ValueError):
                    last["high"] = False
                last["at"] = now
            return last["high"]

        return under_pressure


# ---- the decision ----


class Admission:
    """The flowers in flight in this worker against its budget. Used from the event loop only (no lock)."""

    def __init__(self) -> None:
        self.budget: Budget | None = None  # none yet: everything is admitted (and counted)
        self.in_flight = 0
        self.under_pressure: Callable[[], bool] | None = None
        self.slots: asyncio.Semaphore | None = None  # made in the server's event loop, on first use
        # flowers answered per second over the last RATE_WINDOW_SECONDS: (the second, flowers) per slot of a ring
        self._answered = [(0, 0)] * RATE_WINDOW_SECONDS
        # The largest batch refused for want of room lately, and until when room is kept for it (monotonic s)
        self._kept_for: tuple[int, float] = (0, 0.0)

    def configure(self, budget: Budget, under_pressure: Callable[[], bool] | None = None) -> Budget:
        """Take the budget (the service's __init__, once the model is loaded); logs it and sets its gauge."""
        self.budget = budget
        self.under_pressure = under_pressure if budget.flowers is not None else None
        budget_flowers.set(budget.flowers or 0)
        logger.info(budget.describe())
        return budget

    def admit(self, flowers: int) -> str | None:
        """Take `flowers` into flight, or say why not (a reason of iris_requests_shed_total)."""
        limit = self.budget.flowers if self.budget is not None else None
        if limit is not None:
            small = flowers <= SMALL_REQUEST_FLOWERS
            ceiling = limit if small else limit - SMALL_RESERVE_FLOWERS
            # Room is kept for the largest batch refused lately, against smaller batches: without it, requests
            # charged more (a V2 body's bound is its size over 8 bytes) never find a gap that smaller ones keep
            # filling, and are refused every time they come back.
            kept, until = self._kept_for
            held = kept if not small and flowers < kept and time.monotonic() < until else 0
            if self.in_flight and self.in_flight + flowers + held > ceiling:  # alone, even an oversized one may run
                if not small and flowers >= held:
                    self._kept_for = (flowers, time.monotonic() + MAX_RETRY_AFTER_SECONDS)
                return "flowers_in_flight"
            if not small and self.under_pressure is not None and self.under_pressure():
                return "memory_pressure"
            if flowers >= kept:
                self._kept_for = (0, 0.0)  # the batch room was kept for (or a larger one) is in
        self.in_flight += flowers
        flowers_in_flight.inc(flowers)
        return None

    def release(self, flowers: int) -> None:
        self.in_flight -= flowers
        flowers_in_flight.dec(flowers)
        second = int(time.monotonic())
        at, count = self._answered[second % RATE_WINDOW_SECONDS]
        self._answered[second % RATE_WINDOW_SECONDS] = (second, (count if at == second else 0) + flowers)

    def retry_after(self) -> int:
        """Seconds until the flowers in flight are answered, at the rate of the last RATE_WINDOW_SECONDS."""
        now = int(time.monotonic())
        answered = sum(count for at, count in self._answered if now - at < RATE_WINDOW_SECONDS)
        if not answered:
            return RETRY_AFTER_SECONDS
        seconds = math.ceil(self.in_flight * RATE_WINDOW_SECONDS / answered)
        return max(RETRY_AFTER_SECONDS, min(MAX_RETRY_AFTER_SECONDS, seconds))

    def slot(self, flowers: int) -> asyncio.Semaphore | None:
        """The execution slots a request of `flowers` must take one of: None for a small one, or with refusing off."""
        if flowers <= SMALL_REQUEST_FLOWERS or self.budget is None or self.budget.flowers is None:
            return None
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.budget.slots)
        return self.slots


class Charge:
    """An admitted request's flowers (and execution slot), released when the request is over and no work it
    started in a worker thread still runs: a 504 cancels the request, not a thread that is classifying its batch."""

    def __init__(self, admission: Admission, flowers: int, loop: asyncio.AbstractEventLoop) -> None:
        self.admission, self.flowers, self.loop = admission, flowers, loop
        self.on_release: list[Callable[[], None]] = []  # run in the event loop once released
        self._holders = 1  # the request itself
        self._lock = threading.Lock()

    def hold(self) -> bool:
        """Work starts in a thread: hold the charge; False when the request is over already (the charge is gone)."""
        with self._lock:
            if self._holders == 0:
                return False
            self._holders += 1
            return True

    def drop(self) -> None:
        """One holder is done; the last one releases the flowers (from a thread: through the event loop)."""
        with self._lock:
            self._holders -= 1
            if self._holders:
                return
        if _in_loop(self.loop):
            self._release()
        else:
            self.loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self.admission.release(self.flowers)
        for release in self.on_release:
            release()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# The charge of the request being served; worker threads get it with the request's context.
_CHARGE: contextvars.ContextVar[Charge | None] = contextvars.ContextVar("iris_admission_charge", default=None)


@contextmanager
def charged_work() -> Iterator[None]:
    """Around an API's work in a worker thread: its request's charge is held until the work ends, even when the
    request was answered (504) and cancelled meanwhile. Work whose request is over already is not started."""
    charge = _CHARGE.get()
    if charge is not None and not charge.hold():
        raise asyncio.CancelledError("the request was answered before its work started")
    try:
        yield
    finally:
        if charge is not None:
            charge.drop()


def charge(path: str, headers: Any) -> int | None:
    """The flowers a POST to `path` is charged before its body is read; None when the route is not a
    many-flower one, or the declared body is over the size limit (the request guard refuses it unread)."""
    if path == "/classify_batch":
        density = BATCH_FLOWER_BYTES
    elif path.startswith("/v2/models/") and path.endswith("/infer"):
        density = V2_FLOWER_BYTES
    else:
        return None
    declared = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return MAX_BATCH_FLOWERS  # chunked: its size is known only once read
        if name == b"content-length":
            declared = value
    length = int(declared) if declared is not None and declared.isdigit() else MAX_BODY_BYTES
    if length > MAX_BODY_BYTES:
        return None
    return min(MAX_BATCH_FLOWERS, max(1, math.ceil(length / density)))


class AdmissionControl:
    """ASGI middleware: a POST to a many-flower route is admitted against `admission`, or refused at once.

    The refusal is a 503 with Retry-After and `{"error": ..., "reason": ...}`, sent before any of the body is
    read (when the wait is CLOSE_FROM_SECONDS or more: once the body is read and dropped, and with
    Connection: close); the charge of an admitted request is held until its answer is sent (or it fails), and
    while work it started in a worker thread still runs (`charged_work`).
    """

    def __init__(self, app: Any, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        flowers = charge(scope["path"], scope["headers"])
        if flowers is None:
            await self.app(scope, receive, send)
            return
        reason = self.admission.admit(flowers)
        if reason is not None:
            requests_shed_total.labels(reason=reason).inc()
            wait = self.admission.retry_after()
            headers = [(b"retry-after", b"%d" % wait)]
            if wait >= CLOSE_FROM_SECONDS:
                # A client that sent Expect: 100-continue waits for leave to send its body: reading would ask
                # for it (uvicorn's 100 Continue), and there is nothing unread to reset the close.
                expects = any(name == b"expect" for name, _ in scope["headers"])
                if not expects and not await drain(receive):
                    return  # the client went away: nobody to answer
                headers.append((b"connection", b"close"))
            await send_json(send, 503, self.refusal(reason, flowers, wait), headers)
            return
        held = Charge(self.admission, flowers, asyncio.get_running_loop())
        token = _CHARGE.set(held)
        slots = self.admission.slot(flowers)
        holding = False

        async def send_releasing(message: Any) -> None:  # the slot is for the work, not for sending the answer
            nonlocal holding
            if holding and message["type"] == "http.response.start":
                holding = False
                slots.release()
            await send(message)

        try:
            if slots is None:
                await self.app(scope, receive, send)
                return
            batches_waiting.inc()
            try:
                await slots.acquire()
            finally:
                batches_waiting.dec()
            holding = True
            await self.app(scope, receive, send_releasing)
        finally:
            _CHARGE.reset(token)
            if holding:  # no answer started (an error, or a 504 that cancelled it): the slot goes with the charge
                held.on_release.append(slots.release)
            held.drop()

    def refusal(self, reason: str, flowers: int, wait: int) -> dict[str, Any]:
        budget = self.admission.budget
        if reason == "memory_pressure":
            why = "the server's memory is near its limit"
        else:
            why = (
                f"{self.admission.in_flight:,} flowers are in flight; this request's {flowers:,} would pass "
                f"the budget of {budget.flowers if budget else 0:,}"
            )
        return {
            "error": f"overloaded, not processed: {why}; retry after {wait} s",
            "reason": reason,
        }


async def drain(receive: Any, *, limit: int = MAX_BODY_BYTES, seconds: float = DRAIN_SECONDS) -> bool:
    """Read and drop the request's body, so that closing the connection after the answer does not reset it
    (a socket closed with unread bytes sends RST, and the client may lose the answer). False when the client
    went away; a body over `limit` or slower than `seconds` is left unread (True: answer anyway)."""
    read = 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return False
                read += len(message.get("body", b""))
                if read > limit or not message.get("more_body", False):
                    return True
    except TimeoutError:
        return True
