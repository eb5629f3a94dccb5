"""ProtocolError, and the one handler that answers it: the spec's `{"error": "..."}` with a 4xx status, never a 5xx."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

JSON = "application/json"


class ProtocolError(Exception):
    """A request the protocol refuses: answered with `status` and `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message})


def protocol_error_response(request: Request, error: ProtocolError) -> Response:
    """The answer to a ProtocolError raised anywhere under a V2 route (a FastAPI exception handler)."""
    return Response(error.body(), status_code=error.status, media_type=JSON)


# For FastAPI(exception_handlers=...): the V2 routes raise, this answers.
EXCEPTION_HANDLERS = {ProtocolError: protocol_error_response}


def describe(errors: Sequence[dict[str, Any]]) -> str:
    """pydantic's errors as one line: where (a JSON path), what rule, and the value refused."""
    parts = []
    for error in errors:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.get("loc", ()))
        refused = error.get("input")
        shown = "" if isinstance(refused, (dict, list)) else f" (got {_clipped(repr(refused))})"
        parts.append(f"{where.lstrip('.') or 'body'}: {error['msg']}{shown}")
    return "; ".join(parts)


def _clipped(text: str, limit: int = 120) -> str:
    """A refused value as shown in an error: a whole body refused as invalid JSON is not echoed back whole."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
