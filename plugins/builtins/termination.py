"""request-termination: answer every request with a fixed status and message (Kong's plugin of
the same name), e.g. during maintenance; the upstream is never called."""

from __future__ import annotations

from plugins.interface import Plugin, Refuse, RequestView

__all__ = ["RequestTermination"]


class RequestTermination(Plugin):
    name = "request-termination"
    version = "1.0.0"
    priority = 2000  # before anything that would do work for a request that is refused anyway
    timeout_ms = 50
    config_schema = {
        "type": "object",
        "properties": {
            "status_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
            "message": {"type": "string", "maxLength": 1000, "default": "The service is unavailable."},
        },
        "additionalProperties": False,
    }

    def access(self, request: RequestView) -> None:
        raise Refuse(
            "REQUEST_TERMINATED",
            self.config.get("message", "The service is unavailable."),
            status=self.config.get("status_code", 503),
        )
