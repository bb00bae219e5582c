"""Running the compiled plugin chain (SPEC section 19): the access step of the pipeline, the
response hooks the responder calls before headers leave, and the log hooks, run after the
response from a queue, off the response path.

Isolation: a hook that raises, or runs past its plugin's `timeout_ms`, answers 500
PLUGIN_ERROR for that request, is logged with the plugin's name and counted in
`gateway_plugin_errors_total{plugin}`; nothing a plugin does can end the worker. A
coroutine hook is cancelled at its deadline; a plain function cannot be interrupted, so its
overrun is detected when it returns.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import deque
from time import perf_counter

from gateway_project.core.problems import PROBLEM_TYPES, problem_document
from plugins.constants import LOG_QUEUE_LIMIT
from plugins.interface import PROTECTED_RESPONSE_HEADERS, Answer, LogEntry, Refuse, RequestView, ResponseView
from proxy.exchange import Answered, Exchange, Rejection
from proxy.forward import BodyStalled, BodyTooLarge, ClientGone, body_rejection, request_body
from proxy.plugin_chain import BoundPlugin, Chain

__all__ = ["PluginLogQueue", "run_plugins"]

logger = logging.getLogger("gateway.plugins")

_PROBLEM_CONTENT_TYPE = (b"content-type", b"application/problem+json")
# A plugin's problem may add members, never replace the ones RFC 9457 and the gateway define.
_RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "request_id"})


class PluginFailed(Exception):
    """A hook broke (raised, overran, misused the API): its request answers PLUGIN_ERROR."""


def run_plugins(exchange: Exchange):
    """Access phase: the chain of this service and caller, if any (one attribute check if none)."""
    plugins = exchange.service.plugins
    if plugins is None:
        return None
    identity = exchange.identity
    chain = plugins.for_tenant(identity.tenant if identity is not None else None)
    if chain is None:
        return None
    exchange.plugins = chain
    return _run_access(exchange, chain) if chain.access else None


async def _run_access(exchange: Exchange, chain: Chain) -> None:
    view = RequestView(exchange, read_request_body)
    exchange.plugin_view = view
    if chain.reads_body:
        await read_request_body(exchange)
    for plugin in chain.access:
        try:
            await _call(plugin, plugin.access, view)
        except Refuse as refusal:
            raise _refusal(exchange, plugin, refusal) from None
        except Answer as answer:
            raise _answered(exchange, plugin, answer) from None
        except (Rejection, Answered, ClientGone):
            raise  # the gateway's own answer while a plugin read the body (413, 408, gone)
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin ends its request only
            raise _failure(exchange, plugin, exc) from exc


async def _call(plugin: BoundPlugin, hook, argument) -> None:
    started = perf_counter()
    result = hook(argument)
    if inspect.isawaitable(result):
        try:
            async with asyncio.timeout(plugin.timeout):  # no extra task, unlike wait_for
                await result
        except TimeoutError:
            raise PluginFailed(f"ran past its timeout_ms ({plugin.timeout * 1000:g} ms)") from None
    elif perf_counter() - started > plugin.timeout:
        raise PluginFailed(f"ran past its timeout_ms ({plugin.timeout * 1000:g} ms)")


def _failure(exchange: Exchange, plugin: BoundPlugin, exc: BaseException) -> Rejection:
    """Log with the plugin's name, count, and answer 500 PLUGIN_ERROR without running more hooks."""
    reason = str(exc) if isinstance(exc, PluginFailed) else f"{type(exc).__name__}: {exc}"
    logger.error(
        "plugin %s failed on %s: %s",
        plugin.name,
        exchange.service.slug,
        reason,
        exc_info=not isinstance(exc, PluginFailed),
        extra={"plugin": plugin.name, "request_id": exchange.request_id, "service": exchange.service.slug},
    )
    exchange.runtime.metrics.plugin_errors.labels(plugin.name).inc()
    if exchange.plugins is not None:
        exchange.plugins = exchange.plugins.after_failure
    return Rejection("PLUGIN_ERROR", f"The {plugin.name} plugin failed; the request was not forwarded.")


def _refusal(exchange: Exchange, plugin: BoundPlugin, refusal: Refuse):
    """The problem a plugin asked for: a Rejection, or an Answered when it chose another status."""
    problem = PROBLEM_TYPES.get(refusal.code)
    if problem is None:
        unknown = PluginFailed(f"refused with an unknown problem code {refusal.code!r}")
        return _failure(exchange, plugin, unknown)
    extra = {k: v for k, v in refusal.extra.items() if k not in _RESERVED_MEMBERS}
    status = refusal.status or problem.status
    try:
        json.dumps(extra)
    except (TypeError, ValueError):
        return _failure(exchange, plugin, PluginFailed("refused with members that are not JSON"))
    if not _valid_status(status):
        return _failure(exchange, plugin, PluginFailed(f"refused with status {status!r}"))
    headers = [_header(exchange, plugin, n, v) for n, v in refusal.headers.items()]
    if status == problem.status:
        return Rejection(refusal.code, str(refusal.detail), headers, **extra)
    detail = str(refusal.detail)
    document = problem_document(refusal.code, detail, exchange.path, exchange.request_id, **extra)
    document["status"] = status
    body = json.dumps(document, separators=(",", ":")).encode()
    return Answered(status, [_PROBLEM_CONTENT_TYPE, *headers], body)


def _answered(exchange: Exchange, plugin: BoundPlugin, answer: Answer):
    """The plugin's own answer, or PLUGIN_ERROR when it is not one HTTP can carry."""
    if not (_valid_status(answer.status) and isinstance(answer.body, bytes)):
        bad = PluginFailed(f"answered with status {answer.status!r} or a body that is not bytes")
        return _failure(exchange, plugin, bad)
    headers = [_header(exchange, plugin, name, value) for name, value in answer.headers.items()]
    return Answered(answer.status, headers, answer.body)


def _valid_status(status) -> bool:
    """A final status the gateway may answer with (no 1xx: those are not answers)."""
    return isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599


def _header(exchange: Exchange, plugin: BoundPlugin, name: str, value: str) -> tuple[bytes, bytes]:
    lowered = str(name).lower()
    if lowered in PROTECTED_RESPONSE_HEADERS or any(c in f"{name}{value}" for c in "\r\n\0"):
        raise _failure(exchange, plugin, PluginFailed(f"answered with a header it may not set: {name!r}"))
    return lowered.encode("latin-1"), str(value).encode("latin-1")


async def read_request_body(exchange: Exchange) -> bytes:
    """The whole body for a plugin (bounded like forwarding), then replayed to the upstream."""
    view = exchange.plugin_view
    if view is not None and view.cached_body is not None:
        return view.cached_body
    body = await request_body(exchange)
    if body is None:  # no body announced: nothing was received, nothing to replay
        body = b""
    else:
        if not isinstance(body, bytes):
            try:
                body = b"".join([chunk async for chunk in body])
            except (BodyTooLarge, BodyStalled) as exc:
                raise body_rejection(exchange) from exc
        _replay(exchange, body)
    if view is not None:
        view.cached_body = body
    return body


def _replay(exchange: Exchange, body: bytes) -> None:
    original = exchange.receive
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return pending.pop() if pending else await original()

    exchange.receive = receive


def run_response_hooks(exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """Response phase (called by the responder before the status line leaves)."""
    chain = exchange.plugins
    view = ResponseView(status, headers, exchange.plugin_view or RequestView(exchange, read_request_body))
    for plugin in chain.response:
        started = perf_counter()
        try:
            plugin.response(view)
            if perf_counter() - started > plugin.timeout:
                raise PluginFailed(f"ran past its timeout_ms ({plugin.timeout * 1000:g} ms)")
        except (Exception, SystemExit) as exc:
            raise _failure(exchange, plugin, exc) from exc


class PluginLogQueue:
    """Finished requests waiting for their chain's log hooks, drained by one task per loop."""

    def __init__(self, metrics) -> None:
        self.metrics = metrics
        self._pending: deque[tuple[Chain, LogEntry]] = deque()
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def submit(self, exchange: Exchange, duration: float) -> None:
        if len(self._pending) >= LOG_QUEUE_LIMIT:
            self.dropped += 1
            return
        view = exchange.plugin_view or RequestView(exchange, read_request_body)
        entry = LogEntry(
            request_id=exchange.request_id,
            method=exchange.method,
            path=exchange.path,
            service=exchange.service.slug,
            status=exchange.status,
            duration=duration,
            client_ip=exchange.client_ip,
            identity=view.identity,
        )
        self._pending.append((exchange.plugins, entry))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="plugin-log-hooks")

    async def _drain(self) -> None:
        while self._pending:
            chain, entry = self._pending.popleft()
            for plugin in chain.log:
                try:
                    await _call(plugin, plugin.log, entry)
                except (Exception, SystemExit) as exc:
                    logger.error(
                        "plugin %s log hook failed: %s",
                        plugin.name,
                        exc,
                        extra={"plugin": plugin.name, "request_id": entry.request_id},
                    )
                    self.metrics.plugin_errors.labels(plugin.name).inc()
            await asyncio.sleep(0)  # one request's hooks at a time: requests keep the loop
