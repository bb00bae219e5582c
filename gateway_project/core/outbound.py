"""The one outbound guard: every URL the gateway itself fetches passes it (SPEC section 14).

Targets, health checks, OpenAPI documents, identity-provider JWKS and introspection URLs,
webhooks, WhatsApp and geocoding all go through the same two checks:

- at save (`check_url`): http or https, a host, no credentials, no cloud-metadata host name,
  and no address in a denied network (the literal, or what the name resolves to right now);
- at connect (`resolve`, used by the httpx transports and the aiohttp connector below): the
  addresses a name resolves to are checked and only a checked address is dialled, so a
  name that later resolves to the metadata address (DNS rebinding) is refused.

Denied always: unspecified, "this network", link-local (169.254.169.254 lives there),
multicast, reserved, broadcast and the known metadata addresses. On top of that,
`UPSTREAM_DENY_NETWORKS` (env) lists more; loopback and private networks are allowed
unless listed there (the demo upstreams run on loopback).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
import anyio
import httpcore
import httpx
from aiohttp.abc import AbstractResolver
from django.conf import settings

__all__ = [
    "ALLOWED_SCHEMES",
    "GuardedConnector",
    "OutboundRefused",
    "async_outbound_client",
    "check_address",
    "check_url",
    "guarded_async_transport",
    "guarded_transport",
    "lookup_answers",
    "outbound_client",
    "resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
DENIED_HOSTNAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
# Never reachable on purpose, whatever UPSTREAM_DENY_NETWORKS says.
ALWAYS_DENIED_NETWORKS = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 dials the local host on Linux
        "169.254.0.0/16",  # IPv4 link-local, the cloud metadata address 169.254.169.254
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "::/128",  # unspecified
        "fe80::/10",  # IPv6 link-local
        "ff00::/8",  # IPv6 multicast
        "fd00:ec2::254/128",  # AWS IPv6 metadata
    )
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4


class OutboundRefused(OSError):
    """The guard refused a URL or an address; `code` is the validation code shown at save."""

    def __init__(self, message: str, code: str = "denied_network") -> None:
        # (errno, strerror): aiohttp shows strerror in its ClientConnectorError text.
        super().__init__(errno.EACCES, message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


# --- The policy ------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _networks(configured: tuple[str, ...]) -> tuple:
    extra = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in configured if cidr.strip())
    return ALWAYS_DENIED_NETWORKS + extra


def _denied_networks() -> tuple:
    return _networks(tuple(settings.UPSTREAM_DENY_NETWORKS))


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else the address itself."""
    if address.version == 4:
        return address
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in NAT64_PREFIX:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded or address


def check_address(host: str, address: str) -> None:
    """Refuse `address` (what `host` resolved to) when it lies in a denied network."""
    ip = _embedded_ipv4(ipaddress.ip_address(address.split("%", 1)[0]))
    if any(ip in network for network in _denied_networks()):
        raise OutboundRefused(f"{host} is in a denied network ({ip}); see UPSTREAM_DENY_NETWORKS.")


def _check_hostname(host: str) -> None:
    if host.lower().rstrip(".") in DENIED_HOSTNAMES:
        raise OutboundRefused(f"{host} is a cloud metadata host.")


def _url_parts(url: str, label: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"Not a valid URL: {exc}.", "invalid_url") from exc
    if parts.scheme not in ALLOWED_SCHEMES:
        raise OutboundRefused(f"{label} must use http or https.", "invalid_scheme")
    if not parts.hostname:
        raise OutboundRefused(f"{label} need a host.", "invalid_url")
    if parts.username or parts.password:
        raise OutboundRefused(f"{label} may not carry credentials.", "invalid_url")
    if port == 0:
        raise OutboundRefused("Port 0 is not a valid port.", "invalid_url")
    return parts


def check_url(url: str, label: str = "Outbound URLs") -> SplitResult:
    """The save-time check: shape, host name, and the addresses the host has right now.

    A name that does not resolve from here (a cluster-internal one) passes: the connect-time
    check judges what it resolves to when the gateway dials it.
    """
    parts = _url_parts(url, label)
    host = parts.hostname.rstrip(".")
    _check_hostname(host)
    for address in _addresses_now(host, parts.port or 0):
        check_address(host, address)
    return parts


def _addresses_now(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return _lookup(host, port)
    except (OSError, UnicodeError):
        return []


# --- Name resolution (one place, so tests can answer it) ---------------------------------


def system_lookup(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(info[4][0] for info in infos))


_lookup: Lookup = system_lookup


@contextmanager
def lookup_answers(table: dict[str, list[str]]) -> Iterator[None]:
    """Answer name lookups from `table` (other names as the system does): tests of rebinding."""
    global _lookup
    previous = _lookup

    def answer(host: str, port: int) -> list[str]:
        found = table.get(host.lower().rstrip("."))
        return list(found) if found is not None else previous(host, port)

    _lookup = answer
    try:
        yield
    finally:
        _lookup = previous


def resolve(host: str, port: int) -> list[str]:
    """The connect-time check: `host`'s addresses, refused whole if any one is denied.

    Refusing the whole answer (rather than dropping the bad address) keeps a rebinding name
    from steering the dial to the metadata address on a retry.
    """
    _check_hostname(host)
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        addresses = _lookup(host, port)
    for address in addresses:
        check_address(host, address)
    return addresses


# --- httpx (control plane, and the data plane when UPSTREAM_CLIENT=httpx) ------------------


def _refused_connect(exc: OutboundRefused) -> httpcore.ConnectError:
    """httpx reports httpcore's ConnectError as its own; callers already handle that one."""
    return httpcore.ConnectError(f"refused by the outbound guard: {exc.message}")


class _GuardedBackend(httpcore.NetworkBackend):
    """Dials only addresses the guard checked; TLS still verifies the original host name."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except OutboundRefused as exc:
            raise _refused_connect(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _first_connected(
            addresses,
            lambda address: self._backend.connect_tcp(address, port, timeout, local_address, socket_options),
        )

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    """The asynchronous twin of _GuardedBackend; the lookup runs in a worker thread."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = await anyio.to_thread.run_sync(resolve, host, port)
        except OutboundRefused as exc:
            raise _refused_connect(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"{host} has no address")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _first_connected(addresses: Iterable[str], dial: Callable[[str], Any]):
    last_error: Exception | None = None
    for address in addresses:
        try:
            return dial(address)
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            last_error = exc
    raise last_error or httpcore.ConnectError("no address")


def _check_scheme(request: httpx.Request) -> None:
    """Refuse a request whose URL is not http(s) before any pool is consulted."""
    if request.url.scheme not in ALLOWED_SCHEMES:
        raise httpx.UnsupportedProtocol(f"refused by the outbound guard: {request.url.scheme}")


class _GuardedTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _check_scheme(request)
        return super().handle_request(request)


class _GuardedAsyncTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _check_scheme(request)
        return await super().handle_async_request(request)


def guarded_transport(**options) -> httpx.HTTPTransport:
    """An httpx transport whose every connection passes the guard (options as HTTPTransport)."""
    transport = _GuardedTransport(trust_env=False, **options)
    transport._pool._network_backend = _GuardedBackend()  # httpcore's one dialling hook
    return transport


def guarded_async_transport(**options) -> httpx.AsyncHTTPTransport:
    """The asynchronous guarded transport (options as AsyncHTTPTransport)."""
    transport = _GuardedAsyncTransport(trust_env=False, **options)
    transport._pool._network_backend = _GuardedAsyncBackend()
    return transport


def outbound_client(**options) -> httpx.Client:
    """A guarded httpx client: redirects off (a 30x could point anywhere), no proxy env."""
    return httpx.Client(transport=guarded_transport(), follow_redirects=False, trust_env=False, **options)


def async_outbound_client(verify=None, **options) -> httpx.AsyncClient:
    """The asynchronous guarded client, configured as `outbound_client`; `verify` an
    ssl.SSLContext of a target's own TLS settings (gateway_project.core.tls)."""
    transport = guarded_async_transport() if verify is None else guarded_async_transport(verify=verify)
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, **options)


# --- aiohttp (the data plane's upstream client and WebSocket handshakes) -------------------


class _GuardedResolver(AbstractResolver):
    """Names resolved by the guard's lookup (in a thread, as aiohttp's ThreadedResolver does)."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_UNSPEC) -> list[dict]:
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(None, _lookup, host, port)
        return [_resolve_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        return None


def _resolve_result(host: str, address: str, port: int) -> dict:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that checks every address it is about to dial.

    aiohttp hands IP literals past the resolver, so the check sits in `_resolve_host`, which
    runs once per new connection (the DNS cache still spares the lookup): pooled keep-alive
    requests pay nothing.
    """

    def __init__(self, **options) -> None:
        options.setdefault("resolver", _GuardedResolver())
        super().__init__(**options)

    async def _resolve_host(self, host: str, port: int, traces=None):
        results = await super()._resolve_host(host, port, traces=traces)
        _check_hostname(host)
        for result in results:
            check_address(host, result["host"])
        return results
