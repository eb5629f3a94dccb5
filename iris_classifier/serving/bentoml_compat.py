"""Every use of a private or undocumented BentoML API, in one place: the reaches private_apis.py names (with the
BentoML version they were written for), and the tests that trip when an upgrade stops one applying.

Nothing else in the project imports `bentoml._internal`, `_bentoml_sdk` or `_bentoml_impl`
(tests/service/test_bentoml_compat.py holds that). docs/private-apis.md says why each is here and what it saves.
- `install_response_start_timeout` (`response-start-timeout`): BentoML builds its `traffic.timeout` middleware
  from ResponseStartTimeout, whose timer is cancelled once a request is answered (BentoML's own keeps each
  request's context for the whole timeout). Tripwire: BentoML's max_concurrency 429 carries Retry-After.
- `serving_bento_labels` (`served-bento-labels`): the labels of the Bento being served, from the service's
  undocumented `bento` attribute. Tripwire: the Bento's /model shows its registry labels.
- `request_id` and `trace_id` (`request-id`): the ids BentoML gives the request being served, from its private
  trace context. Tripwire: an answer's request id is BentoML's X-BentoML-Request-ID.
"""

from __future__ import annotations

import random
from typing import Any

from bentoml._internal.context import trace_context

from iris_classifier.serving.middleware import ResponseStartTimeout
from iris_classifier.serving.private_apis import REQUEST_ID

PINNED_BENTOML = REQUEST_ID.written_for

# ---- the response-start timeout ----


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


# ---- the Bento being served ----


def serving_bento_labels(service: Any) -> dict[str, str] | None:
    """The labels of the Bento this server runs (None when serving the work tree)."""
    bento = getattr(service, "bento", None)
    return dict(bento.info.labels) if bento is not None else None


# ---- the request being served ----


def request_id() -> str:
    """The request's id as the prediction log writes it: BentoML's request id (its OpenTelemetry server span's
    id) in decimal; BentoML's X-BentoML-Request-ID header shows the same number in hex. Outside a request
    (the service called in-process) a fresh random id of the same form: call it once per request."""
    number = trace_context.request_id
    return str(number if number is not None else random.getrandbits(64))


def trace_id() -> int:
    """The request's OpenTelemetry trace id (0 outside a request)."""
    return trace_context.trace_id
