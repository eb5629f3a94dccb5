"""Pieces of the HTTP service kept out of service.py: which model to serve, and the body size limit."""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

from iris_classifier.model import read_model_info
from iris_classifier.paths import MODEL_INFO

# A full batch of 10,000 flowers is about 900 kB of JSON; 2 MiB leaves room for formatting.
MAX_BODY_BYTES = 2 * 1024 * 1024


def model_tag_to_serve() -> str:
    """IRIS_MODEL_TAG if set, else the tag the pipeline recorded in models/model.json."""
    tag = os.environ.get("IRIS_MODEL_TAG")
    if tag:
        return tag
    try:
        return read_model_info(MODEL_INFO)["tag"]
    except FileNotFoundError:
        raise SystemExit(
            "no model to serve: models/model.json is missing. Run `make pipeline` (trains, or pulls from the "
            "DVC remote) or set IRIS_MODEL_TAG to a tag in the BentoML store"
        ) from None


def stored_model_metadata(tag: str) -> dict[str, Any]:
    """The model's metadata from the BentoML store, or exit with what to run to get the model."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return dict(bentoml.models.get(tag).info.metadata)
    except NotFound:
        raise SystemExit(
            f"model {tag} is not in the BentoML store ({os.environ.get('BENTOML_HOME', '~/bentoml')}): "
            "run `make pipeline` to train it, or `make model-import` after `dvc pull`"
        ) from None


class BodyTooLarge(BentoMLException):
    """A chunked body grew past the limit (BentoML answers it with this status and message)."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodySizeLimit:
    """Refuse request bodies over max_bytes with 413 before they are read into memory."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> bytes:
        return json.dumps(
            {"error": f"request body is larger than the limit of {self.max_bytes} bytes", "limit_bytes": self.max_bytes}
        ).encode()

    async def _refuse(self, send: Any) -> None:
        body = self._message()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)
