"""The data plane: one ordered list of small steps, like Kong's phases (SPEC section 4).

Each step reads and annotates the Exchange; a step refuses by raising `Rejection` (a
problem document) or answers by raising `Answered` (a CORS preflight). Steps that wait on
the network return an awaitable. Nothing here touches the database.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from proxy.cache import serve_from_cache
from proxy.exchange import Answered, Exchange, Rejection
from proxy.forward import ClientGone, forward
from proxy.hygiene import check_headers, normalize_path
from proxy.plugins import run_plugins
from proxy.policy import POLICY, assign_request_id

__all__ = ["PIPELINE", "ProxyApp", "choose_target"]

logger = logging.getLogger("gateway.proxy")


def apply_cors(exchange: Exchange) -> None:
    """2. CORS headers for allowed origins; preflights answered here."""
    exchange.runtime.cors.apply(exchange)


def check_hygiene(exchange: Exchange) -> None:
    """3. Refuse ambiguous paths and framing; settle the one normalized path."""
    check_headers(exchange)
    exchange.path, had_dots = normalize_path(exchange.raw_path)
    if had_dots:
        _refuse_prefix_escape(exchange)


def _refuse_prefix_escape(exchange: Exchange) -> None:
    route = exchange.runtime.snapshot.route(exchange.path)
    as_sent = unquote(exchange.raw_path.decode("latin-1"))
    if route is None or not (as_sent + "/").startswith(route[1] + "/"):
        raise Rejection("INVALID_REQUEST", "Dot segments in the path leave the service's prefix.")


def match_route(exchange: Exchange) -> None:
    """4. Longest registered prefix (or /api/v<N>/ alias); 404 otherwise; 405 with Allow."""
    route = exchange.runtime.snapshot.route(exchange.path)
    if route is None:
        raise Rejection("NOT_FOUND", f"No service is registered for {exchange.path}.")
    service, exchange.prefix, path_version = route
    exchange.service = service
    if exchange.method not in service.allowed_methods:
        raise Rejection("METHOD_NOT_ALLOWED", f"{exchange.method} is not allowed on {service.slug}.")
    select_version(exchange, path_version)


def select_version(exchange: Exchange, path_version: str | None) -> None:
    """The path's version, else Accept-Version / X-API-Version, else the service's default."""
    service = exchange.service
    index = exchange.header_index
    requested = path_version or (index.get(b"accept-version") or index.get(b"x-api-version") or b"").decode(
        "latin-1"
    ).strip().lstrip("vV")
    if not requested or requested == service.default_version:
        return
    version = service.versions.get(requested)
    if version is None:
        raise Rejection("NOT_FOUND", f"The {service.slug} service offers no version {requested[:20]}.")
    exchange.version = version
    exchange.response_headers += version.deprecation_headers


def choose_target(exchange: Exchange) -> None:
    """9. A healthy target whose breaker admits traffic (503 CIRCUIT_OPEN / SERVICE_UNAVAILABLE)."""
    identity = exchange.identity
    demo = bool(identity is not None and identity.demo_session)
    exchange.target = exchange.runtime.balancer.choose(exchange.service, demo, version=exchange.version)


# POLICY (proxy.policy) is the chain every door runs: IP lists, authenticate, rate limit,
# authorize, tenant checks. Plugins' access hooks run once the caller is known (SPEC 19).
PIPELINE = (
    assign_request_id,
    apply_cors,
    check_hygiene,
    match_route,
    *POLICY,
    run_plugins,
    serve_from_cache,
    choose_target,
)


class ProxyApp:
    """Plain ASGI app for service paths: the steps, then forward (10) and respond (11)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope, receive, send) -> None:
        exchange = Exchange(self.runtime, scope, receive, send)
        respond = self.runtime.respond
        try:
            for step in PIPELINE:
                pending = step(exchange)
                if pending is not None:
                    await pending
            await forward(exchange)
        except Rejection as rejection:
            if exchange.response_started:
                raise
            await respond.problem(exchange, rejection)
        except Answered as answered:
            await respond.answer(exchange, answered)
        except ClientGone:
            exchange.status = 499  # nginx's "client closed request", for logs and metrics
        except Exception:
            if exchange.response_started:
                raise
            logger.exception("data plane failure", extra={"request_id": exchange.request_id})
            await respond.problem(exchange, Rejection("INTERNAL_ERROR", "The gateway failed unexpectedly."))
        finally:
            respond.finish(exchange)
