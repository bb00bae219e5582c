"""The client's IP: the socket peer, unless the peer is a trusted proxy (SPEC section 4 step 10).

X-Forwarded-For is walked right to left and the first address not in TRUSTED_PROXIES is
the client, so an untrusted client rotating X-Forwarded-For cannot pick its own identity.
The data plane holds one resolver per runtime; Django views call `client_ip(request)`,
which resolves the same way.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

__all__ = ["ClientAddressResolver", "client_ip"]

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


@lru_cache(maxsize=1)
def _resolver() -> ClientAddressResolver:
    return ClientAddressResolver(settings.TRUSTED_PROXIES)


def client_ip(request) -> str:
    """The client IP of a Django request, resolved like the data plane does (TRUSTED_PROXIES only)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    ip, _ = _resolver().resolve(
        request.META.get("REMOTE_ADDR", ""), forwarded.encode() if forwarded else None
    )
    return ip
