"""mock: answer from the examples of the service's OpenAPI document, never calling the upstream.

For each operation it takes the configured status (default: the lowest 2xx the document
lists), then the first JSON content of that response, then its `example`, the first of its
`examples`, or its schema's `example`, compiled once per document version.
"""

from __future__ import annotations

import json

from plugins.builtins.openapi import operation_index, resolve
from plugins.interface import Answer, Plugin, PluginContext, Refuse, RequestView

__all__ = ["Mock"]

_NO_BODY = object()


class Mock(Plugin):
    name = "mock"
    version = "1.0.0"
    priority = 1500
    timeout_ms = 50
    config_schema = {
        "type": "object",
        "properties": {
            "status_code": {
                "type": "integer",
                "minimum": 200,
                "maximum": 599,
                "description": "Which documented response to answer with (default: the lowest 2xx).",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, config: dict, context: PluginContext) -> None:
        super().__init__(config, context)
        document = context.openapi_document()
        self.index = operation_index(document, context.service_prefix) if document else None
        self.answers: dict[tuple[str, str], Answer | None] = {}
        for routes in self.index.routes.values() if self.index else ():  # now, not on a request
            for *_, operation in routes:
                self.answers[(operation.method, operation.template)] = self._answer(operation.responses)

    def access(self, request: RequestView) -> None:
        if self.index is None:
            detail = f"The {request.service} service has no OpenAPI document to mock."
            raise Refuse("SERVICE_UNAVAILABLE", detail)
        found = self.index.find(request.method, request.route_path)
        if found is None:
            detail = f"The {request.service} service documents no {request.method} {request.path}."
            raise Refuse("NOT_FOUND", detail)
        operation = found[0]
        answer = self.answers[(operation.method, operation.template)]
        if answer is None:
            raise Refuse("NOT_FOUND", f"The document has no example for {request.method} {request.path}.")
        raise Answer(answer.status, answer.body, headers={**answer.headers, "x-gateway-mock": "true"})

    def _answer(self, responses: dict) -> Answer | None:
        status = self._status(responses)
        if status is None:
            return None
        response = resolve(self.index.document, responses.get(str(status)))
        content = response.get("content") if isinstance(response, dict) else None
        if not content:
            return Answer(status)
        content_type, media = next(iter(content.items()))
        example = _example(self.index.document, media if isinstance(media, dict) else {})
        if example is _NO_BODY:
            return Answer(status, headers={"content-type": content_type})
        body = example.encode() if isinstance(example, str) and "json" not in content_type else None
        if body is None:
            body = json.dumps(example, separators=(",", ":")).encode()
        return Answer(status, body, content_type=content_type)

    def _status(self, responses: dict) -> int | None:
        wanted = self.config.get("status_code")
        codes = sorted(int(code) for code in responses if str(code).isdigit())
        if wanted is not None:
            return wanted if wanted in codes else None
        successes = [code for code in codes if 200 <= code < 300]
        return successes[0] if successes else None


def _example(document: dict, media: dict):
    if "example" in media:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, dict) and examples:
        first = resolve(document, next(iter(examples.values())))
        if isinstance(first, dict) and "value" in first:
            return first["value"]
    schema = resolve(document, media.get("schema"))
    if isinstance(schema, dict) and "example" in schema:
        return schema["example"]
    if isinstance(schema, dict) and isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    return _NO_BODY
