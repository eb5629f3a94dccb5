"""The web UI as an ASGI app that imports and builds Gradio on its first request, not at server start.

Importing Gradio costs ~2.3 s and BentoML imports the service in two processes, so building the UI
at import time delayed every start by seconds for a page most API replicas never serve (`python -m
bench.ui_start` measures it: docs/benchmarks.md, "Web UI start"). This app
builds it on the first request to the mount path, or when `build_soon()` starts it in the background
once the service is ready, whichever comes first. What it builds is an ordinary ASGI application
that mounts the UI at the same path (demo/app.py: `gr.mount_gradio_app`, Gradio's public way to
serve inside another app); the build runs in a worker thread (the event loop keeps answering the
API), once, behind a lock, and the app's lifespan (where Gradio starts its queue) is then run by the
ASGI lifespan protocol in the server's event loop. Nothing here knows Gradio's internals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("bentoml.iris_classifier.ui")  # under "bentoml": in the server's log

ASGIApp = Callable[..., Any]


class Lifespan:
    """An ASGI app's lifespan, driven from outside: `await start()` once, `await stop()` at the end."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._started: asyncio.Future[dict[str, Any]] | None = None
        self._stopped: asyncio.Future[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind.startswith("lifespan.startup.") and self._started and not self._started.done():
            self._started.set_result(message)
        elif kind.startswith("lifespan.shutdown.") and self._stopped and not self._stopped.done():
            self._stopped.set_result(message)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started, self._stopped = loop.create_future(), loop.create_future()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = loop.create_task(self.app(scope, self._inbox.get, self._send))
        self._task.add_done_callback(self._ended)
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._started
        if message["type"] != "lifespan.startup.complete":
            said = str(message.get("message") or message["type"]).strip().splitlines() or [message["type"]]
            raise RuntimeError(f"the web UI did not start: {said[-1]}")  # a traceback's last line names the error

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The lifespan coroutine returned or failed: nobody waits on a message that will never come."""
        error = None if task.cancelled() else task.exception()
        for waiting in (self._started, self._stopped):
            if waiting is not None and not waiting.done():
                waiting.set_result({"type": "lifespan.ended", "message": repr(error) if error else "returned"})

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), timeout_s)  # type: ignore[arg-type]
        except TimeoutError:
            self._task.cancel()


class LazyASGIApp:
    """ASGI app mounted at `path`: the app that `build_app()` makes (serving `path` itself), built on first use."""

    def __init__(
        self,
        build_app: Callable[[], ASGIApp],
        *,
        path: str,
        after_build: Callable[[], None] | None = None,
    ) -> None:
        self.build_app = build_app
        self.path = path.rstrip("/")
        self.after_build = after_build  # e.g. freeze the new long-lived objects out of the GC's reach
        self.app: ASGIApp | None = None
        self.lifespan: Lifespan | None = None
        self._lock: asyncio.Lock | None = None
        self._background: asyncio.Task[None] | None = None

    async def _built(self) -> ASGIApp:
        if self.app is not None:
            return self.app
        if self._lock is None:  # made here, in the server's event loop
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.app is None:
                started = time.perf_counter()
                app = await asyncio.to_thread(self.build_app)  # imports Gradio and builds the page
                lifespan = Lifespan(app)
                await lifespan.start()  # Gradio's queue: its tasks need the server's running loop
                if self.after_build is not None:
                    self.after_build()
                self.app, self.lifespan = app, lifespan
                logger.info("Built the web UI at %s/ in %.1f s", self.path, time.perf_counter() - started)
        return self.app

    def build_soon(self, delay_s: float = 1.0) -> None:
        """Build in the background `delay_s` after now (call it in the event loop, once the model is loaded):
        readiness does not wait for the UI, and its first visitor rarely does. Without a running loop
        (the service made in-process, outside a server) the UI is built on its first request only."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def build() -> None:
            try:
                await self._built()
            except Exception:  # the next request tries again, and answers the error
                logger.exception("Building the web UI in the background failed")

        def start() -> None:
            self._background = loop.create_task(build())  # held: the loop keeps only a weak reference

        loop.call_later(delay_s, start)

    async def close(self) -> None:
        """Run the built app's lifespan shutdown (Gradio stops its queue); nothing when it was never built."""
        if self.lifespan is not None:
            await self.lifespan.stop()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":  # the built app's lifespan is run by _built and close
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await self.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        app = await self._built()
        # The built app serves `path` itself: it sees the request as its server's root app would.
        root_path = scope.get("root_path", "")
        if root_path.endswith(self.path):
            scope = {**scope, "root_path": root_path[: -len(self.path)]}
        await app(scope, receive, send)
