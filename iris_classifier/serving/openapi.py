"""The OpenAPI document BentoML generates, made valid OpenAPI 3.0 and true to what the service answers."""

from __future__ import annotations

import json
from typing import Any

from iris_classifier.serving.answers import REQUEST_ID_HEADER, REQUEST_ID_HEADER_DOC

# The native APIs whose answers carry the request's id in a header (BentoML documents their bodies only).
REQUEST_ID_PATHS = ("/classify", "/classify_batch")


def openapi_30(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the generated document valid OpenAPI 3.0 and true to what the service answers.

    pydantic writes JSON Schema 2020-12 bounds (`exclusiveMinimum: 0`); OpenAPI 3.0 wants
    `minimum: 0, exclusiveMinimum: true`. Request bodies are required. BentoML documents a 400's
    `detail` as a string, while a validation error carries a list of {loc, msg, type} objects
    naming each field and rule. The native APIs' answers carry the X-Request-ID header.
    """

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
                value = node.get(flag)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    node[bound] = value
                    node[flag] = True
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    # Every POST needs its JSON body (an empty one is refused naming the missing fields).
    for operations in spec.get("paths", {}).values():
        body = operations.get("post", {}).get("requestBody")
        if body is not None:
            body["required"] = True
    invalid = spec.get("components", {}).get("schemas", {}).get("InvalidArgument", {})
    if "detail" in invalid.get("properties", {}):
        invalid["properties"]["detail"] = {
            "title": "Error Detail",
            "description": "a message, or one {loc, msg, type} object per invalid field",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            ],
        }
    for path in REQUEST_ID_PATHS:
        ok = spec.get("paths", {}).get(path, {}).get("post", {}).get("responses", {}).get("200")
        if ok is not None:
            ok.setdefault("headers", {})[REQUEST_ID_HEADER] = REQUEST_ID_HEADER_DOC
    return spec


class OpenAPI30Fixes:
    """Serve /docs.json through `openapi_30`; every other path passes untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/docs.json":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    if start.get("status") == 200:
                        body = json.dumps(openapi_30(json.loads(body))).encode()
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
