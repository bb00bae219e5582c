"""An example plugin package (docs/plugins.md): a `response` hook that adds a header."""

from __future__ import annotations

from plugins.interface import Plugin, ResponseView

__all__ = ["HelloHeader"]


class HelloHeader(Plugin):
    """Adds `X-Hello: <greeting>` to every response of the services it is configured for."""

    name = "hello-header"
    version = "1.0.0"
    priority = 900
    timeout_ms = 20
    config_schema = {
        "type": "object",
        "properties": {
            "greeting": {"type": "string", "minLength": 1, "maxLength": 100},
        },
        "required": ["greeting"],
        "additionalProperties": False,
    }

    def response(self, response: ResponseView) -> None:
        response.add_header("x-hello", self.config["greeting"])
