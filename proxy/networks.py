"""Per-service and per-tenant IP allow and deny lists (SPEC section 15), checked on the client IP
that `gateway_project.core.clientip` resolved.
"""

from __future__ import annotations

import ipaddress

from proxy.exchange import Rejection

__all__ = ["refuse_unlisted_network"]


def refuse_unlisted_network(exchange, allow: tuple, deny: tuple) -> None:
    """403 FORBIDDEN when the client IP is denied, or not allowed by a non-empty allowlist."""
    address = exchange.client_address
    if address is None:
        try:
            address = ipaddress.ip_address(exchange.client_ip)
        except ValueError:
            raise Rejection("FORBIDDEN", "The client address could not be determined.") from None
        address = getattr(address, "ipv4_mapped", None) or address
        exchange.client_address = address
    if any(address in network for network in deny) or (allow and not any(address in n for n in allow)):
        raise Rejection("FORBIDDEN", "Requests from your network are not allowed here.")
