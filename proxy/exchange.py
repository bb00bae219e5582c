"""One proxied request's state as it moves through the pipeline's steps."""

from __future__ import annotations

from time import perf_counter

__all__ = ["Answered", "Exchange", "Rejection"]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Browsers cannot set headers on EventSource or WebSocket: those doors take ?access_token=.
_QUERY_TOKEN_DOORS = frozenset({"websocket", "sse"})


class Rejection(Exception):
    """A step refuses the request: the pipeline answers with this problem and forwards nothing."""

    def __init__(self, code: str, detail: str, headers=(), **extra) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = list(headers)
        self.extra = extra


class Exchange:
    """The request as the client sent it, what the steps learned about it, and the outcome."""

    __slots__ = (
        "runtime",
        "scope",
        "receive",
        "send",
        "method",
        "raw_path",
        "query",
        "headers",
        "header_index",
        "duplicate_headers",
        "started",
        "request_id",
        "traceparent",
        "path",
        "service",
        "identity",
        "tenant",
        "client_ip",
        "peer_trusted",
        "response_headers",
        "status",
        "bytes_in",
        "bytes_out",
        "upstream_time",
        "target",
        "origin",
        "rate_limit_keys",
        "cache_key",
        "response_started",
        "body_overflow",
        "body_stalled",
        "prefix",
        "version",
        "client_address",
        "door",
        "writes",
        "query_token_allowed",
        "plugins",
        "plugin_view",
    )

    def __init__(self, runtime, scope, receive, send, door: str = "http") -> None:
        self.runtime = runtime
        self.scope = scope
        self.receive = receive
        self.send = send
        self.door = door  # "http", "websocket", "sse" or "endpoint" (proxy.policy)
        self.method: str = scope.get("method", "GET")
        # A WebSocket carries the client's frames upstream: it needs what a write needs.
        self.writes = door == "websocket" or self.method not in READ_METHODS
        self.query_token_allowed = door in _QUERY_TOKEN_DOORS
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        self.query: bytes = scope.get("query_string", b"")
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        index: dict[bytes, bytes] = {}
        duplicates: set[bytes] | None = None
        for name, value in self.headers:
            if name in index:
                if duplicates is None:
                    duplicates = set()
                duplicates.add(name)
            else:
                index[name] = value
        self.header_index = index
        self.duplicate_headers = duplicates or ()
        self.started = perf_counter()
        self.request_id = ""
        self.traceparent = b""
        self.path = ""
        self.service = None
        self.identity = None
        self.tenant = None
        self.client_ip = ""
        self.peer_trusted = False
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_time = 0.0
        self.target = None
        self.origin: bytes | None = None
        self.rate_limit_keys = None
        self.cache_key = None
        self.response_started = False
        self.body_overflow = False
        self.body_stalled = False
        self.prefix = ""
        self.version = None
        self.client_address = None
        self.plugins = None  # the plugin chain this request runs (proxy.plugins), if any
        self.plugin_view = None

    def header(self, name: bytes) -> bytes | None:
        return self.header_index.get(name)


class Answered(Exception):
    """A step answers the request itself (a CORS preflight, a cache hit): nothing is forwarded."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body
