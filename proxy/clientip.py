"""The client's IP: the socket peer, unless the peer is a trusted proxy (SPEC section 4 step 10).

X-Forwarded-For is walked right to left and the first address not in TRUSTED_PROXIES is
the client, so an untrusted client rotating X-Forwarded-For cannot pick its own identity.
"""

from __future__ import annotations

import ipaddress

__all__ = ["ClientAddressResolver", "refuse_unlisted_network"]

_CACHE_LIMIT = 4096


class ClientAddressResolver:
    def __init__(self, trusted_cidrs: list[str]) -> None:
        self._networks = [ipaddress.ip_network(c.strip(), strict=False) for c in trusted_cidrs]
        self._trusted_cache: dict[str, bool] = {}

    def is_trusted(self, address: str) -> bool:
        cached = self._trusted_cache.get(address)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            trusted = False
        else:
            ip = getattr(ip, "ipv4_mapped", None) or ip
            trusted = any(ip in network for network in self._networks)
        if len(self._trusted_cache) >= _CACHE_LIMIT:
            self._trusted_cache.clear()
        self._trusted_cache[address] = trusted
        return trusted

    def resolve(self, peer: str, forwarded_for: bytes | None) -> tuple[str, bool]:
        """(client ip, whether the peer is trusted)."""
        if not self._networks or not self.is_trusted(peer):
            return peer, False
        if not forwarded_for:
            return peer, True
        client = peer
        for hop in reversed(forwarded_for.decode("latin-1").split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage in the chain: stop at the last address we could verify
            client = hop
            if not self.is_trusted(hop):
                break
        return client, True


def refuse_unlisted_network(exchange, allow: tuple, deny: tuple) -> None:
    """403 FORBIDDEN when the client IP is denied, or not allowed by a non-empty allowlist."""
    from proxy.exchange import Rejection

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
