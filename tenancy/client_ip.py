"""The client IP for Django views, resolved like the data plane does (TRUSTED_PROXIES only)."""

from functools import lru_cache

from django.conf import settings

from proxy.clientip import ClientAddressResolver

__all__ = ["client_ip"]


@lru_cache(maxsize=1)
def _resolver() -> ClientAddressResolver:
    return ClientAddressResolver(settings.TRUSTED_PROXIES)


def client_ip(request) -> str:
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    ip, _ = _resolver().resolve(
        request.META.get("REMOTE_ADDR", ""), forwarded.encode() if forwarded else None
    )
    return ip
