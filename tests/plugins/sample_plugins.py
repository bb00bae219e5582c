"""Plugins the tests load through GATEWAY_PLUGINS (dotted paths): markers that show the order
hooks run in, one that raises, one that overruns its timeout_ms, one that logs, and two that
must be refused at load."""

from __future__ import annotations

import asyncio
import threading

from plugins.interface import Answer, Plugin, Refuse, RequestView, ResponseView

ORDER_HEADER = "x-plugin-order"
LOGGED: list[tuple[str, int]] = []
LOGGED_EVENT = threading.Event()


class _Marker(Plugin):
    """Adds its own name to X-Plugin-Order from its access hook, so a response shows the order."""

    version = "1.0.0"
    priority = 100
    config_schema = {"type": "object", "additionalProperties": False}

    def access(self, request: RequestView) -> None:
        request.add_response_header(ORDER_HEADER, self.name)


class MarkOne(_Marker):
    name = "mark-one"


class MarkTwo(_Marker):
    name = "mark-two"


class MarkThree(_Marker):
    name = "mark-three"


class Explode(Plugin):
    name = "explode"
    version = "1.0.0"

    def access(self, request: RequestView) -> None:
        raise RuntimeError("boom")


class Sleepy(Plugin):
    name = "sleepy"
    version = "1.0.0"
    timeout_ms = 50
    config_schema = {"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}}}

    async def access(self, request: RequestView) -> None:
        await asyncio.sleep(self.config.get("seconds", 0.5))


class ExplodeOnResponse(Plugin):
    name = "explode-on-response"
    version = "1.0.0"

    def response(self, response: ResponseView) -> None:
        raise ValueError("bad response hook")


class SpoofRequestId(Plugin):
    """Tries to replace a header the gateway owns: refused as a plugin error."""

    name = "spoof-request-id"
    version = "1.0.0"

    def response(self, response: ResponseView) -> None:
        response.add_header("X-Request-ID", "spoofed")


class Recorder(Plugin):
    """A log hook: records (request id, status) after the response."""

    name = "recorder"
    version = "1.0.0"

    async def log(self, entry) -> None:
        LOGGED.append((entry.request_id, entry.status))
        LOGGED_EVENT.set()


class NoHooks(Plugin):
    """Refused at load: it defines no hook."""

    name = "no-hooks"
    version = "1.0.0"


class BadSchema(Plugin):
    name = "bad-schema"
    version = "1.0.0"
    config_schema = {"type": "no-such-type"}

    def access(self, request: RequestView) -> None:
        return None


class RefuseUnlessTagged(Plugin):
    """Refuses with a catalogue problem, an extra member and a header unless X-Tag is sent."""

    name = "refuse-unless-tagged"
    version = "1.0.0"

    def access(self, request: RequestView) -> None:
        if "x-tag" not in request.headers:
            raise Refuse("FORBIDDEN", "Send X-Tag.", headers={"x-needs": "x-tag"}, hint="tag it")


class BadAnswer(Plugin):
    """Answers with something HTTP cannot carry."""

    name = "bad-answer"
    version = "1.0.0"

    def access(self, request: RequestView) -> None:
        raise Answer(42, b"")


class Exits(Plugin):
    name = "exits"
    version = "1.0.0"

    def access(self, request: RequestView) -> None:
        raise SystemExit(3)
