"""The plugin interface (SPEC section 19): what a plugin author subclasses and what its hooks see.

A plugin is a class with `name`, `version`, a JSON Schema `config_schema`, a default
`priority` and `timeout_ms`, and any of three hooks, in the order Kong runs its phases:

- `access(request)`: before forwarding. It may raise `Refuse` (a problem document), raise
  `Answer` (the gateway answers itself, nothing is forwarded), or add response headers.
  It may be a coroutine (`async def`), for example to read the body.
- `response(response)`: the status and headers, before the body leaves; it may add headers.
- `log(entry)`: after the response was sent, off the response path.

Hooks see read-only views, never the gateway's own objects: a plugin cannot change the
identity the gateway verified, the headers it sends upstream, or the request id. This module
imports nothing from the gateway, so a plugin package depends on it alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "PROTECTED_RESPONSE_HEADERS",
    "Answer",
    "IdentityView",
    "LogEntry",
    "Plugin",
    "PluginContext",
    "Refuse",
    "RequestView",
    "ResponseView",
]

DEFAULT_PRIORITY = 1000
DEFAULT_TIMEOUT_MS = 200
# The gateway writes these itself: a plugin may not add or replace them.
PROTECTED_RESPONSE_HEADERS = frozenset(
    {
        "x-request-id",
        "x-process-time",
        "x-user-id",
        "x-tenant-id",
        "x-user-roles",
        "x-user-scopes",
        "x-demo-mode",
        "x-demo-session",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)


class Refuse(Exception):  # noqa: N818 - a plugin says `raise Refuse(...)`, as it reads
    """Refuse the request with a problem from the gateway's catalogue (`code`), optionally with
    another status (e.g. request-termination's configured one), headers and extra members."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.headers = dict(headers or {})
        self.extra = extra


class Answer(Exception):  # noqa: N818 - `raise Answer(...)`
    """Answer the request from the gateway: nothing is forwarded. A dict or list body is JSON."""

    def __init__(
        self,
        status: int = 200,
        body: bytes | str | dict | list = b"",
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(status)
        if isinstance(body, dict | list):
            body = json.dumps(body, separators=(",", ":")).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        if content_type:
            self.headers.setdefault("content-type", content_type)


@dataclass(frozen=True, slots=True)
class IdentityView:
    """Who the gateway verified the caller to be (no token, no key hash)."""

    kind: str  # "jwt", "introspection" or "api_key"
    subject: str
    tenant: str | None
    roles: frozenset[str]
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a plugin instance is built for, once per config version (not per request).

    `service` is the slug of the service this instance serves; `openapi_document` returns
    that service's OpenAPI document as the gateway fetched it for /api/v1/docs (paths under
    the gateway's prefix), or None.
    """

    service: str
    service_prefix: str
    tenant: str | None
    openapi_document: Any = field(default=lambda: None, repr=False)


class RequestView:
    """The request as a hook sees it: read-only, plus `add_response_header` and `body()`."""

    __slots__ = ("_exchange", "_headers", "_read_body", "cached_body")

    def __init__(self, exchange, read_body) -> None:
        self._exchange = exchange
        self._headers: dict[str, str] | None = None
        self._read_body = read_body
        self.cached_body: bytes | None = None

    @property
    def method(self) -> str:
        return self._exchange.method

    @property
    def path(self) -> str:
        """The normalized path the gateway routed (under the service's prefix)."""
        return self._exchange.path

    @property
    def route_path(self) -> str:
        """The path after the service's prefix (what an OpenAPI document's paths describe)."""
        exchange = self._exchange
        return exchange.path[len(exchange.prefix) :] or "/"

    @property
    def query(self) -> str:
        return self._exchange.query.decode("latin-1")

    @property
    def headers(self) -> Mapping[str, str]:
        """The client's headers, lowercased names (the first of duplicates)."""
        if self._headers is None:
            self._headers = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in self._exchange.header_index.items()
            }
        return _ReadOnly(self._headers)

    @property
    def request_id(self) -> str:
        return self._exchange.request_id

    @property
    def client_ip(self) -> str:
        return self._exchange.client_ip

    @property
    def service(self) -> str:
        return self._exchange.service.slug

    @property
    def identity(self) -> IdentityView | None:
        identity = self._exchange.identity
        if identity is None:
            return None
        return IdentityView(identity.kind, identity.subject, identity.tenant, identity.roles, identity.scopes)

    @property
    def body_bytes(self) -> bytes:
        """The body, read before the access hooks ran: for plugins with `reads_body = True`,
        whose hooks can then stay plain functions (no timer, no await)."""
        if self.cached_body is None:
            raise RuntimeError("the body was not read yet: declare reads_body = True or await body()")
        return self.cached_body

    async def body(self) -> bytes:
        """The whole request body (bounded by the service's limit); still forwarded unchanged."""
        return await self._read_body(self._exchange)

    def add_response_header(self, name: str, value: str) -> None:
        """Add a header to whatever answers this request (upstream, the gateway or a plugin)."""
        self._exchange.response_headers.append(_checked_header(name, value))


class ResponseView:
    """The status and headers about to leave; `add_header` is the only change allowed."""

    __slots__ = ("status", "_headers", "request")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], request: RequestView) -> None:
        self.status = status
        self._headers = headers
        self.request = request

    @property
    def headers(self) -> Mapping[str, str]:
        return _ReadOnly({n.decode("latin-1"): v.decode("latin-1") for n, v in self._headers})

    def add_header(self, name: str, value: str) -> None:
        self._headers.append(_checked_header(name, value))


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One finished request, as the log hooks get it (after the response was sent)."""

    request_id: str
    method: str
    path: str
    service: str
    status: int
    duration: float
    client_ip: str
    identity: IdentityView | None


class _ReadOnly(Mapping):
    __slots__ = ("_data",)

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _checked_header(name: str, value: str) -> tuple[bytes, bytes]:
    """A header a plugin may add: not one the gateway owns, no line breaks (no injection)."""
    lowered = name.strip().lower()
    if not lowered or lowered in PROTECTED_RESPONSE_HEADERS:
        raise ValueError(f"plugins may not set the {name!r} header")
    if any(c in f"{name}{value}" for c in "\r\n\0") or not lowered.isascii():
        raise ValueError(f"invalid header {name!r}")
    return lowered.encode("latin-1"), str(value).encode("latin-1")


class Plugin:
    """Subclass this; define any of `access`, `response`, `log` (docs/plugins.md)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.0.0"
    config_schema: ClassVar[dict] = {"type": "object"}
    priority: ClassVar[int] = DEFAULT_PRIORITY  # higher runs first, as in Kong
    timeout_ms: ClassVar[int] = DEFAULT_TIMEOUT_MS
    # True: the gateway reads the body before the access hooks run, so a slow upload counts
    # against REQUEST_BODY_TIMEOUT (408), not against this plugin's timeout_ms.
    reads_body: ClassVar[bool] = False

    def __init__(self, config: dict, context: PluginContext) -> None:
        """Built once per config version and service: do expensive preparation here."""
        self.config = config
        self.context = context
