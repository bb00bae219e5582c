"""Tenant checks (SPEC section 4 step 8): lapsed subscriptions and read-only tenants."""

from __future__ import annotations

import time

from proxy.exchange import Exchange, Rejection
from proxy.networks import refuse_unlisted_network

__all__ = ["check_tenant"]

_INACTIVE = "The tenant's subscription is inactive; renew it to restore access."


def check_tenant(exchange: Exchange) -> None:
    identity = exchange.identity
    if identity is None or identity.tenant is None:
        return
    tenant = exchange.runtime.snapshot.tenants.get(identity.tenant)
    if tenant is None:
        raise Rejection("FORBIDDEN", "The credentials belong to a tenant that no longer exists.")
    exchange.tenant = tenant
    if tenant.ip_allow or tenant.ip_deny:
        refuse_unlisted_network(exchange, tenant.ip_allow, tenant.ip_deny)
    if tenant.subscription_status == "canceled" or time.time() > tenant.grace_ends_at:
        raise Rejection("SUBSCRIPTION_INACTIVE", _INACTIVE)
    if tenant.read_only and exchange.writes:
        raise Rejection("TENANT_READ_ONLY", tenant.read_only_reason or "The tenant is read-only.")
