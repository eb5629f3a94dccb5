"""The lazily built web UI app (serving/lazy_ui.py) with real Starlette apps: built once on first use, its lifespan
run over the ASGI protocol, and each request seen as the built app's own root would see it."""

from __future__ import annotations

import contextlib

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from iris_classifier.serving.lazy_ui import LazyASGIApp


def served(events: list[str], *, fail_startup: bool = False):
    """A builder of an app that serves /ui/page itself, as gr.mount_gradio_app's app serves its path."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if fail_startup:
            raise RuntimeError("no queue today")
        events.append("startup")
        yield
        events.append("shutdown")

    async def page(request):
        return PlainTextResponse(f"{request.scope['root_path']} {request.url.path} {events}")

    def build():
        events.append("built")
        return Starlette(routes=[Mount("/ui", routes=[Route("/page", page)])], lifespan=lifespan)

    return build


def test_built_on_first_use_once_its_lifespan_started_then_stopped():
    events: list[str] = []
    lazy = LazyASGIApp(served(events), path="/ui/", after_build=lambda: events.append("after"))
    server = Starlette(routes=[Mount("/ui", app=lazy)])  # as BentoML mounts it
    with TestClient(server) as client:
        assert events == []  # nothing built at start
        first = client.get("/ui/page")
        assert first.status_code == 200
        # the built app saw the request at its own root: its mount matched /ui, the path is the full one
        assert first.text == "/ui /ui/page ['built', 'startup', 'after']"
        assert client.get("/ui/page").text == first.text  # built once
        client.portal.call(lazy.close)
    assert events == ["built", "startup", "after", "shutdown"]


def test_a_startup_that_fails_is_an_error_naming_it_and_the_next_request_tries_again():
    events: list[str] = []
    lazy = LazyASGIApp(served(events, fail_startup=True), path="/ui")
    with TestClient(Starlette(routes=[Mount("/ui", app=lazy)])) as client:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="the web UI did not start: RuntimeError: no queue today"):
                client.get("/ui/page")
    assert events == ["built", "built"]
    assert lazy.app is None
