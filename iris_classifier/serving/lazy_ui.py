"""The web UI as an ASGI app that imports and builds Gradio on its first request, not at server start.

Importing Gradio costs ~2.3 s and BentoML imports the service in two processes, so building the UI
at import time delayed every start by seconds for a page most API replicas never serve. This app does
what `bentoml.gradio.mount_gradio_app` and its startup hook do (bentoml_compat.gradio_app and
start_gradio_app), on the first request to the mount path, or when `build_soon()` starts it in the
background once the service is ready, whichever comes first: build the Blocks, make the Gradio app,
start its queue. The import and the build run in a worker thread (the event loop keeps answering the
API), once, behind a lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from iris_classifier.serving import bentoml_compat

logger = logging.getLogger("bentoml.iris_classifier.ui")  # under "bentoml": in the server's log


class LazyGradioApp:
    """ASGI app for `path`: the Gradio app that `build_blocks()` describes, built on first use."""

    def __init__(
        self,
        build_blocks: Callable[[], Any],
        *,
        path: str,
        max_concurrency: int | None = None,
        after_build: Callable[[], None] | None = None,
    ) -> None:
        self.build_blocks = build_blocks
        self.path = path.rstrip("/")
        self.max_concurrency = max_concurrency
        self.after_build = after_build  # e.g. freeze the new long-lived objects out of the GC's reach
        self.app: Any = None
        self._lock: asyncio.Lock | None = None
        self._background: asyncio.Task[None] | None = None

    def _make_app(self) -> Any:
        """Import Gradio, build the Blocks and make the app (runs in a worker thread)."""
        return bentoml_compat.gradio_app(self.build_blocks(), self.path)

    async def _built(self) -> Any:
        if self.app is not None:
            return self.app
        if self._lock is None:  # made here, in the server's event loop
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.app is None:
                started = time.perf_counter()
                app = await asyncio.to_thread(self._make_app)
                bentoml_compat.start_gradio_app(app, self.max_concurrency)  # its queue's tasks need the running loop
                if self.after_build is not None:
                    self.after_build()
                self.app = app
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
            except Exception:  # the next /ui request tries again, and answers the error
                logger.exception("Building the web UI in the background failed")

        def start() -> None:
            self._background = loop.create_task(build())  # held: the loop keeps only a weak reference

        loop.call_later(delay_s, start)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop before the first request
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        app = await self._built()
        await app(scope, receive, send)
