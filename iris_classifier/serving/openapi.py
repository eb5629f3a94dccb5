"""The OpenAPI document BentoML generates, made valid OpenAPI 3.0 and true to what the service answers."""

from __future__ import annotations

import json
from typing import Any

from iris_classifier.serving.answers import REQUEST_ID_HEADER, REQUEST_ID_HEADER_DOC

# The native APIs whose answers carry the request's id in a header (BentoML documents their bodies only).
REQUEST_ID_PATHS = ("/classify", "/classify_batch")
# What the feedback APIs may refuse with besides a 400 (service.py `refuse`), as {"error": ...}.
FEEDBACK_PATHS = ("/feedback", "/feedback_batch")
FEEDBACK_REFUSALS = {
    "401": "IRIS_FEEDBACK_TOKEN is set and the bearer token is missing or wrong",
    "409": "the flower already has a different species (a batch records nothing)",
    "429": "too many labels per second from this client; see Retry-After",
}
ERROR_OBJECT = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def openapi_30(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the generated document valid OpenAPI 3.0 and true to what the service answers.

    pydantic writes JSON Schema 2020-12 bounds (`exclusiveMinimum: 0`); OpenAPI 3.0 wants
    `minimum: 0, exclusiveMinimum: true`. Request bodies are required. BentoML documents a 400's
    `detail` as a string, while a validation error carries a list of {loc, msg, type} objects
    naming each field and rule. The native APIs' answers carry the X-Request-ID header.
    """

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            # pydantic's `X | None` is anyOf [X, {type: null}]; OpenAPI 3.0 says X with nullable: true
            options = node.get("anyOf")
            if isinstance(options, list) and {"type": "null"} in options:
                rest = [option for option in options if option != {"type": "null"}]
                del node["anyOf"]
                if len(rest) == 1:
                    node.update(rest[0])
                else:
                    node["anyOf"] = rest
                node["nullable"] = True
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
    # BentoML inlines an API's output model as "<Model>IODescriptor" and drops `null` from `X | None` fields;
    # the model's own component (pydantic's schema, made 3.0 above) says what is really answered.
    schemas = spec.get("components", {}).get("schemas", {})
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
            title = content.get("schema", {}).get("title", "")
            if title.endswith("IODescriptor") and title.removesuffix("IODescriptor") in schemas:
                content["schema"] = {"$ref": f"#/components/schemas/{title.removesuffix('IODescriptor')}"}
    for path in FEEDBACK_PATHS:
        responses = spec.get("paths", {}).get(path, {}).get("post", {}).get("responses")
        if responses is not None:
            for status, why in FEEDBACK_REFUSALS.items():
                responses[status] = {"description": why, "content": {"application/json": {"schema": ERROR_OBJECT}}}
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
