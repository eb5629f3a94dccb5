"""Admission control in-process: the budget from a cgroup (v1 and v2 layouts), the charge of a request, the
decision, and the middleware's refusal (503, Retry-After, the reason; nothing of the body read)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from pathlib import Path

import pytest

from iris_classifier.domain.schema import MAX_BATCH_FLOWERS
from iris_classifier.serving import admission
from iris_classifier.serving.admission import (
    SMALL_REQUEST_FLOWERS,
    Admission,
    AdmissionControl,
    Budget,
    Cgroup,
    PodMemory,
    charge,
    derive_flowers,
    memory_backed,
)
from iris_classifier.serving.middleware import MAX_BODY_BYTES
from tests.conftest import run_in_own_loop

MIB = 2**20


def cgroup_v2(root: Path, *, limit: str, current: int, inactive: int, cpu: str = "max 100000") -> Path:
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "memory.max").write_text(f"{limit}\n")
    (root / "memory.current").write_text(f"{current}\n")
    (root / "memory.stat").write_text(f"anon 1\nfile 2\ninactive_file {inactive}\nshmem 3\n")
    (root / "cpu.max").write_text(f"{cpu}\n")
    membership = root / "proc-self-cgroup"
    membership.write_text("0::/\n")
    return membership


def cgroup_v1(root: Path, *, limit: int, usage: int, inactive: int, quota: int = -1) -> Path:
    memory, cpu = root / "memory" / "docker" / "abc", root / "cpu" / "docker" / "abc"
    memory.mkdir(parents=True)
    cpu.mkdir(parents=True)
    (memory / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (memory / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (memory / "memory.stat").write_text(f"cache 5\nrss 6\ntotal_inactive_file {inactive}\ntotal_rss 7\n")
    (cpu / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    membership = root / "proc-self-cgroup"
    membership.write_text("9:cpu:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n")
    return membership


def test_cgroup_v2_limit_working_set_and_cpus(tmp_path):
    membership = cgroup_v2(tmp_path, limit=str(768 * MIB), current=300 * MIB, inactive=20 * MIB, cpu="150000 100000")
    cgroup = Cgroup.find(tmp_path, membership)
    assert cgroup == Cgroup(tmp_path, 2)
    assert cgroup.limit() == 768 * MIB
    assert cgroup.working_set() == 280 * MIB  # the kubelet's working set: usage less inactive file pages
    assert cgroup.cpu_limit() == 1.5


def test_cgroup_v2_without_a_limit(tmp_path):
    cgroup = Cgroup.find(tmp_path, cgroup_v2(tmp_path, limit="max", current=1, inactive=0))
    assert cgroup.limit() is None and cgroup.cpu_limit() is None


def test_cgroup_v1_limit_working_set_and_cpus(tmp_path):
    membership = cgroup_v1(tmp_path, limit=512 * MIB, usage=200 * MIB, inactive=10 * MIB, quota=100000)
    cgroup = Cgroup.find(tmp_path, membership)
    assert cgroup.version == 1 and cgroup.directory == tmp_path / "memory" / "docker" / "abc"
    assert cgroup.limit() == 512 * MIB
    assert cgroup.working_set() == 190 * MIB
    assert cgroup.cpu_limit() == 1.0


def test_cgroup_v1_unlimited_is_no_limit(tmp_path):
    membership = cgroup_v1(tmp_path, limit=9223372036854771712, usage=1, inactive=0)
    cgroup = Cgroup.find(tmp_path, membership)
    assert cgroup.limit() is None and cgroup.cpu_limit() is None


def test_no_cgroup_at_all(tmp_path):
    assert Cgroup.find(tmp_path, tmp_path / "missing") is None


def test_memory_backed_reads_the_mount_of_the_folder(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /var/lib/iris-monitor rw,nosuid - tmpfs tmpfs rw,size=8388608k\n"
        "31 22 0:41 / /var/lib/iris-monitor/disk rw - ext4 /dev/sdb1 rw\n"
    )
    assert memory_backed(Path("/var/lib/iris-monitor"), mountinfo)
    assert memory_backed(Path("/var/lib/iris-monitor/iris_predictions"), mountinfo)
    assert not memory_backed(Path("/var/lib/iris-monitor/disk/x"), mountinfo)  # the deepest mount wins
    assert not memory_backed(Path("/var/lib/iris-monitor-2"), mountinfo)  # a prefix of the name is not inside
    assert not memory_backed(Path("/srv"), mountinfo)


def test_the_budget_is_what_fits_per_flower_and_per_worker():
    flowers = derive_flowers(limit=768 * MIB, baseline=200 * MIB, log_bytes=96 * MIB, headroom=77 * MIB, cost=2048,
                             workers=1)  # fmt: skip
    assert flowers == (768 - 200 - 96 - 77) * MIB // 2048
    assert derive_flowers(limit=768 * MIB, baseline=200 * MIB, log_bytes=0, headroom=0, cost=2048, workers=2) == (
        568 * MIB // 2048 // 2
    )
    # a pod too small for even one batch still takes one at a time
    assert derive_flowers(limit=300 * MIB, baseline=290 * MIB, log_bytes=0, headroom=64 * MIB, cost=2048,
                          workers=1) == MAX_BATCH_FLOWERS  # fmt: skip


def pod(tmp_path: Path, *, limit: int, in_memory: bool) -> PodMemory:
    membership = cgroup_v2(tmp_path, limit=str(limit), current=200 * MIB, inactive=0, cpu="100000 100000")
    cgroup = Cgroup.find(tmp_path, membership)
    return PodMemory(cgroup, limit, "cgroup v2 memory.max", tmp_path / "log", in_memory)


def test_the_pods_budget_takes_the_log_out_when_it_lives_in_memory(tmp_path, monkeypatch):
    for name in (admission.SWITCH_ENV, admission.BUDGET_ENV, admission.COST_ENV, admission.LOG_MEMORY_ENV):
        monkeypatch.delenv(name, raising=False)
    in_memory = pod(tmp_path, limit=768 * MIB, in_memory=True)
    on_disk = pod(tmp_path, limit=768 * MIB, in_memory=False)
    assert in_memory.log_files_bytes() == 96 * MIB  # an eighth of the limit
    assert on_disk.log_files_bytes() == 384 * MIB  # BufferedMonitor's default, on a disk
    assert in_memory.log_rotation() == {"max_bytes": 16 * MIB, "backup_count": 5}
    memory_budget, disk_budget = in_memory.budget(), on_disk.budget()
    assert memory_budget.log_bytes == 96 * MIB and disk_budget.log_bytes == 0
    assert disk_budget.flowers - memory_budget.flowers == 96 * MIB // admission.FLOWER_COST_BYTES
    assert memory_budget.slots == 1  # the quota's one CPU
    assert "768 MiB cgroup v2 memory.max - 200 MiB in use - 96 MiB prediction log" in memory_budget.describe()


def test_the_environment_sets_the_budget_or_turns_refusing_off(tmp_path, monkeypatch):
    memory = pod(tmp_path, limit=768 * MIB, in_memory=False)
    monkeypatch.setenv(admission.BUDGET_ENV, "12345")
    assert (memory.budget().flowers, memory.budget().how) == (12345, admission.BUDGET_ENV)
    monkeypatch.setenv(admission.SWITCH_ENV, "off")
    assert memory.budget().flowers is None and "off" in memory.budget().describe()
    monkeypatch.setenv(admission.SLOTS_ENV, "3")
    assert memory.batch_slots() == 3


def test_a_request_is_charged_the_most_flowers_its_body_can_carry():
    def headers(length: int) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]

    assert charge("/classify", headers(100)) is None  # not a many-flower route
    assert charge("/classify_batch", headers(68)) == 1
    assert charge("/classify_batch", headers(68 * 500)) == 500
    assert charge("/classify_batch", headers(MAX_BODY_BYTES)) == MAX_BATCH_FLOWERS
    assert charge("/classify_batch", headers(MAX_BODY_BYTES + 1)) is None  # the guard refuses it unread (413)
    assert charge("/v2/models/iris_classifier/infer", headers(160)) == 20  # "1,1,1,1," per flower, at the densest
    assert charge("/v2/models/iris_classifier/versions/x/infer", headers(8 * 700)) == 700
    assert charge("/classify_batch", [(b"transfer-encoding", b"chunked")]) == MAX_BATCH_FLOWERS


def configured(flowers: int | None, slots: int = 1) -> Admission:
    gate = Admission()
    sizes = {"limit_bytes": 768 * MIB, "baseline_bytes": 0, "log_bytes": 0, "headroom_bytes": 0}
    budget = Budget(flowers=flowers, limit_source="test", flower_cost_bytes=2048, workers=1, how="test", **sizes)
    gate.configure(dataclasses.replace(budget, slots=slots))
    return gate


def test_batches_leave_a_reserve_that_small_requests_can_still_use():
    gate = configured(25_000)
    assert gate.admit(10_000) is None and gate.admit(10_000) is None  # 20,000 of 23,000 for batches
    assert gate.admit(10_000) == "flowers_in_flight"
    assert gate.admit(1) is None and gate.admit(64) is None  # small requests fit into the reserve
    gate.release(10_000)
    assert gate.admit(10_000) is None
    assert gate.in_flight == 20_065


def test_retry_after_is_the_time_the_flowers_in_flight_take_at_the_recent_rate(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(admission.time, "monotonic", lambda: clock[0])
    gate = configured(1_000_000)
    assert gate.retry_after() == 1  # nothing answered yet: the shortest wait
    for _ in range(10):  # 10,000 flowers answered per second for the last 10 s, this one included
        clock[0] += 1
        assert gate.admit(10_000) is None
        gate.release(10_000)
    assert gate.admit(50_000) is None
    assert gate.retry_after() == 5  # 50,000 in flight at 10,000 per second
    assert gate.admit(400_000) is None
    assert gate.retry_after() == 30  # never longer than the request timeout
    clock[0] += 60  # nothing answered for a minute: back to the shortest wait
    assert gate.retry_after() == 1


def test_an_oversized_request_runs_when_nothing_else_is_in_flight():
    gate = configured(5_000)
    assert gate.admit(10_000) is None
    assert gate.admit(10_000) == "flowers_in_flight"


def test_memory_pressure_refuses_batches_but_not_small_requests():
    gate = configured(1_000_000)
    gate.under_pressure = lambda: True
    assert gate.admit(10_000) == "memory_pressure"
    assert gate.admit(1) is None


def test_with_refusing_off_everything_is_admitted_and_counted():
    gate = configured(None)
    assert all(gate.admit(10_000) is None for _ in range(100))
    assert gate.in_flight == 1_000_000
    assert gate.slot(10_000) is None


class App:
    """An ASGI app that reads its body and answers 200, noting what it got."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await self.release.wait()
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def batch_scope(flowers: int) -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/classify_batch",
        "headers": [(b"content-length", str(68 * flowers).encode())],
    }


async def post(middleware: AdmissionControl, scope: dict) -> tuple[list[dict], int]:
    sent: list[dict] = []
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent, reads


def test_the_middleware_refuses_at_once_with_503_retry_after_and_the_reason():
    async def scenario() -> None:
        app, gate = App(), configured(25_000, slots=1)
        middleware = AdmissionControl(app, gate)
        first = asyncio.ensure_future(post(middleware, batch_scope(10_000)))
        second = asyncio.ensure_future(post(middleware, batch_scope(10_000)))
        await asyncio.sleep(0.01)
        assert gate.in_flight == 20_000 and app.calls == 1  # the second waits for the one slot, its body unread
        sent, reads = await post(middleware, batch_scope(10_000))
        assert reads == 0 and app.calls == 1  # refused before any of it was read
        start, body = sent
        assert start["status"] == 503
        headers = dict(start["headers"])
        assert headers[b"retry-after"] == b"1" and headers[b"content-type"] == b"application/json"
        answer = json.loads(body["body"])
        assert answer["reason"] == "flowers_in_flight" and "overloaded, not processed" in answer["error"]
        app.release.set()
        for done in await asyncio.gather(first, second):
            assert done[0][0]["status"] == 200
        assert gate.in_flight == 0 and app.calls == 2  # every charge released once answered

    run_in_own_loop(scenario())


def test_a_refusal_with_a_long_wait_reads_the_body_and_closes_the_connection(monkeypatch):
    """Sent away for CLOSE_FROM_SECONDS or more, a client would come back to a connection the server's keep-alive
    timeout closes: that refusal drops the whole body first (no reset on close) and says Connection: close."""

    async def refused(wait: int, chunks: int, expect: bool = False) -> tuple[dict, int]:
        gate = configured(5_000)
        gate.admit(10_000)  # one batch in flight fills the budget
        monkeypatch.setattr(gate, "retry_after", lambda: wait)
        sent, reads = [], 0

        async def receive() -> dict:
            nonlocal reads
            reads += 1
            return {"type": "http.request", "body": b"x" * 1000, "more_body": reads < chunks}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = batch_scope(10_000)
        if expect:
            scope["headers"].append((b"expect", b"100-continue"))
        await AdmissionControl(App(), gate)(scope, receive, send)
        start, body = sent
        assert start["status"] == 503 and json.loads(body["body"])["reason"] == "flowers_in_flight"
        return dict(start["headers"]), reads

    async def scenario() -> None:
        headers, reads = await refused(wait=admission.CLOSE_FROM_SECONDS - 1, chunks=3)
        assert reads == 0 and b"connection" not in headers  # a short wait: unread, the connection kept
        headers, reads = await refused(wait=admission.CLOSE_FROM_SECONDS, chunks=3)
        assert reads == 3 and headers[b"connection"] == b"close"  # every chunk read, then closed
        assert headers[b"retry-after"] == str(admission.CLOSE_FROM_SECONDS).encode()
        headers, reads = await refused(wait=admission.CLOSE_FROM_SECONDS, chunks=3, expect=True)
        assert reads == 0 and headers[b"connection"] == b"close"  # Expect: 100-continue: its body never asked for

    run_in_own_loop(scenario())


def test_draining_stops_at_the_size_limit_and_when_the_client_leaves():
    async def scenario() -> None:
        endless = iter(lambda: {"type": "http.request", "body": b"x" * 4096, "more_body": True}, None)

        async def big() -> dict:
            return next(endless)

        assert await admission.drain(big, limit=10_000) is True  # stops reading past the limit

        async def gone() -> dict:
            return {"type": "http.disconnect"}

        assert await admission.drain(gone) is False

        async def stalled() -> dict:
            await asyncio.sleep(10)
            return {"type": "http.request", "body": b"", "more_body": False}

        assert await admission.drain(stalled, seconds=0.05) is True  # not waited for longer than that

    run_in_own_loop(scenario())


def test_a_failing_request_releases_its_charge_and_its_slot():
    async def failing(scope, receive, send) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        gate = configured(25_000, slots=1)
        middleware = AdmissionControl(failing, gate)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await post(middleware, batch_scope(10_000))
        assert gate.in_flight == 0 and gate.slots is not None and not gate.slots.locked()

    run_in_own_loop(scenario())


def test_small_requests_and_other_routes_pass_straight_through():
    async def scenario() -> None:
        app, gate = App(), configured(10)
        app.release.set()
        middleware = AdmissionControl(app, gate)
        gate.in_flight = 10  # full
        for scope in (
            {"type": "http", "method": "POST", "path": "/classify", "headers": []},
            {"type": "http", "method": "GET", "path": "/readyz", "headers": []},
            {"type": "http", "method": "GET", "path": "/livez", "headers": []},
        ):
            sent, _ = await post(middleware, scope)
            assert sent[0]["status"] == 200, scope

    run_in_own_loop(scenario())


def test_a_504_keeps_the_charge_until_the_batch_in_its_worker_thread_ends():
    """ResponseStartTimeout answers 504 and cancels the request, but a sync API's batch goes on in its worker
    thread (anyio delivers the cancellation at once): its flowers and its execution slot stay charged until the
    work ends (`charged_work`), or the budget undercounts."""
    import anyio

    from iris_classifier.serving.admission import charged_work
    from iris_classifier.serving.middleware import ResponseStartTimeout

    working, finish = threading.Event(), threading.Event()

    def classify_in_thread() -> None:  # what BentoML runs for /classify_batch, in its thread pool
        with charged_work():
            working.set()
            finish.wait(10)

    async def app(scope, receive, send) -> None:
        await receive()
        await anyio.to_thread.run_sync(classify_in_thread, limiter=anyio.CapacityLimiter(2))  # as BentoML calls it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario() -> None:
        gate = configured(25_000, slots=1)
        served = ResponseStartTimeout(AdmissionControl(app, gate), timeout=0.2)
        sent, _ = await post(served, batch_scope(10_000))
        assert sent[0]["status"] == 504 and working.is_set()
        await asyncio.sleep(0.1)
        assert gate.in_flight == 10_000, "the 504 released the charge of a batch still being classified"
        assert gate.slots.locked(), "the 504 freed the execution slot of a batch still being classified"
        finish.set()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if gate.in_flight == 0:
                break
        assert gate.in_flight == 0 and not gate.slots.locked()  # released once the work ended

    run_in_own_loop(scenario())


def test_work_whose_request_was_answered_before_it_started_is_not_started():
    from iris_classifier.serving.admission import _CHARGE, Charge, charged_work

    async def scenario() -> None:
        gate = configured(25_000)
        assert gate.admit(500) is None
        held = Charge(gate, 500, asyncio.get_running_loop())
        held.drop()  # the request is over: its charge released
        assert gate.in_flight == 0
        _CHARGE.set(held)
        with pytest.raises(asyncio.CancelledError), charged_work():
            raise AssertionError("started")
        assert gate.in_flight == 0  # released once, never twice

    run_in_own_loop(scenario())


def test_room_is_kept_for_a_larger_batch_refused_lately_against_smaller_ones():
    """A batch charged more than others (a V2 body's bound) is not starved by smaller ones filling every gap."""
    gate = configured(50_000)  # batches up to 48,000 flowers in flight (the small reserve: 2,000)
    assert gate.admit(20_000) is None
    assert gate.admit(30_000) == "flowers_in_flight"  # 50,000 > 48,000: room is kept for it from now on
    assert gate.admit(10_000) == "flowers_in_flight"  # would fit (30,000), but not beside the kept 30,000
    assert gate.admit(SMALL_REQUEST_FLOWERS) is None  # one-flower requests are never held back
    gate.release(20_000 + SMALL_REQUEST_FLOWERS)
    assert gate.admit(30_000) is None  # it comes back and fits
    assert gate.admit(10_000) is None  # nothing kept any more: 40,000 fit
    assert gate.in_flight == 40_000
