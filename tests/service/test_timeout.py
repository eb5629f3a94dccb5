"""The request timeout: still a 504 when no answer starts in time, and no request kept alive after it is answered.

The middleware runs on a real event loop around small ASGI apps; `outer` stands for the middlewares
BentoML puts in front of it (OpenTelemetry's sets the request's span in a context variable).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import sys
import weakref

import pytest

from iris_classifier.serving import bentoml_compat
from iris_classifier.serving.middleware import ResponseStartTimeout
from tests.conftest import run, run_in_own_loop

request_state: contextvars.ContextVar[object] = contextvars.ContextVar("request_state")


class RequestState:
    """Stands for a request's span: weak-referenceable, so we can see when it is freed."""


async def answer_ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def call(middleware, *, requests: int = 1) -> tuple[list[dict], list[bool]]:
    """Run requests through the middleware on a fresh loop: the messages sent, and which request states are alive."""
    sent: list[dict] = []
    states: list[weakref.ref] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def outer() -> None:
        state = RequestState()
        states.append(weakref.ref(state))
        request_state.set(state)
        await middleware({"type": "http", "path": "/classify"}, receive, send)

    async def main() -> None:
        for _ in range(requests):
            await asyncio.create_task(outer(), context=contextvars.Context())
        await asyncio.sleep(0.01)  # callbacks already due run; a 30 s timer does not
        gc.collect()
        # The loop is still running: anything it still schedules is still alive.
        states_alive.extend(ref() is not None for ref in states)

    states_alive: list[bool] = []
    run_in_own_loop(main())
    return sent, states_alive


def test_answered_requests_are_released_while_the_loop_runs():
    _, alive = call(ResponseStartTimeout(answer_ok, timeout=30), requests=50)
    assert alive.count(True) == 0, f"{alive.count(True)} of 50 answered requests still held by the server"


def test_bentoml_own_timeout_middleware_still_holds_requests():
    """Guards the workaround: when this fails, BentoML releases requests itself and ResponseStartTimeout can go."""
    own = bentoml_compat.bentoml_own_timeout_middleware()
    assert own.__module__ == "bentoml._internal.server.http.traffic"
    _, alive = call(own(answer_ok, timeout=30), requests=50)
    assert alive.count(True) == 50


def test_a_request_without_an_answer_in_time_gets_504_and_its_handler_is_cancelled():
    cancelled = []

    async def too_slow(scope, receive, send) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    sent, _ = call(ResponseStartTimeout(too_slow, timeout=0.05))
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": "Not able to process the request in 0.05 seconds"}
    assert cancelled == [True]


def test_a_slow_body_after_a_prompt_start_is_not_cut_off():
    async def slow_body(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"late but whole"})

    sent, _ = call(ResponseStartTimeout(slow_body, timeout=0.05))
    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"late but whole"


def test_a_handler_that_fails_before_answering_fails_at_once_not_after_the_timeout():
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("handler bug")

    timeout = 5.0  # a middleware that waited it out would raise the same error, only `timeout` seconds later
    loop_time: list[float] = []

    async def timed() -> None:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RuntimeError, match="handler bug"):
            await ResponseStartTimeout(broken, timeout=timeout)({"type": "http"}, None, None)
        loop_time.append(asyncio.get_running_loop().time() - started)

    run_in_own_loop(timed())
    # The loop's clock never fires a timer early: an error held until the timer fired took at least `timeout`.
    assert loop_time[0] < timeout, f"the handler's error waited {loop_time[0]:.1f} s for the {timeout} s timeout"


def test_the_service_module_installs_it_where_bentoml_builds_its_middlewares(pipeline_ready):
    """What `bentoml serve` imports (service.py) leaves BentoML building ResponseStartTimeout (a fresh process)."""
    probe = (
        "import service\n"
        "from iris_classifier.serving import bentoml_compat\n"
        "from iris_classifier.serving.middleware import ResponseStartTimeout\n"
        "print(bentoml_compat.installed_timeout_middleware() is ResponseStartTimeout)\n"
        "print(bentoml_compat.installed_timeout_middleware().__module__)\n"
    )
    result = run([sys.executable, "-c", probe])
    assert result.stdout.split() == ["True", "iris_classifier.serving.middleware"], result.stdout


def test_importing_the_settings_alone_patches_nothing():
    """server_settings() is a plain dict: importing and calling it leaves BentoML's own middleware in place."""
    probe = (
        "from iris_classifier.serving.settings import server_settings\n"
        "from iris_classifier.serving import bentoml_compat\n"
        "server_settings()\n"
        "print(bentoml_compat.installed_timeout_middleware().__module__)\n"
    )
    assert run([sys.executable, "-c", probe]).stdout.split() == ["bentoml._internal.server.http.traffic"]
