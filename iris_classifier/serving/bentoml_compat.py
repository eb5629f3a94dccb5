"""Every use of a private or undocumented BentoML API, in one place, for the pinned BentoML 1.4.40.

Each workaround names what it fixes and the test that fails once upstream changes, so it can go:
- `install_response_start_timeout`: BentoML's TimeoutMiddleware keeps every request's context for the
  whole `traffic.timeout` (a `loop.call_later` never cancelled). Upstream: not reported as of 2026-11
  (searched BentoML's issues for TimeoutMiddleware / call_later). Test that fails when upstream fixes
  it: tests/service/test_timeout.py::test_bentoml_own_timeout_middleware_still_holds_requests.
- `serving_bento_version`: the Bento's version, read from BentoML's private server context (no
  public API names the Bento a server runs). Test: tests/service/test_http.py (the `/model` card's
  `bento_commit`), which breaks if the attribute moves.
- `serving_bento_labels`: the labels of the Bento being served, from the service's undocumented
  `bento` attribute (set by `bentoml serve <bento>`). Test: tests/registry/test_provenance.py.
- The prediction log (iris_classifier/serving/prediction_log.py) subclasses BentoML's monitor base class and
  stamps records with BentoML's request and server context, as BentoML's own DefaultMonitor does: a
  custom monitor has no public base class or context accessors in 1.4. Re-exported here
  (`MonitorBase`, `MON_DATAS_VAR`, `server_context`, `trace_context`). Test that fails when they
  move: tests/monitoring/test_prediction_log.py.
"""

from __future__ import annotations

from typing import Any

from bentoml._internal.context import server_context, trace_context
from bentoml._internal.monitoring.base import MON_DATAS_VAR, MonitorBase

from iris_classifier.serving.middleware import ResponseStartTimeout

__all__ = ["MON_DATAS_VAR", "MonitorBase", "server_context", "trace_context"]  # for the prediction log

PINNED_BENTOML = "1.4.40"


def bentoml_own_timeout_middleware() -> type:
    """BentoML's TimeoutMiddleware class, as its HTTP app imports it (the one replaced below)."""
    from bentoml._internal.server.http import traffic

    return traffic.__dict__.get("_bentoml_timeout_middleware", traffic.TimeoutMiddleware)


def install_response_start_timeout() -> None:
    """Make BentoML build its `traffic.timeout` middleware from ResponseStartTimeout (it looks the name up per app)."""
    from bentoml._internal.server.http import traffic

    if traffic.TimeoutMiddleware is not ResponseStartTimeout:
        traffic._bentoml_timeout_middleware = traffic.TimeoutMiddleware  # type: ignore[attr-defined]
        traffic.TimeoutMiddleware = ResponseStartTimeout  # type: ignore[misc]


def installed_timeout_middleware() -> type:
    """The class BentoML will build its timeout middleware from, right now."""
    from bentoml._internal.server.http import traffic

    return traffic.TimeoutMiddleware


def serving_bento_version() -> str | None:
    """The version of the Bento this server runs (None when serving the work tree)."""
    return server_context.bento_version


def serving_bento_labels(service: Any) -> dict[str, str] | None:
    """The labels of the Bento this server runs (None when serving the work tree)."""
    bento = getattr(service, "bento", None)
    return dict(bento.info.labels) if bento is not None else None
