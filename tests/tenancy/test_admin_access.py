"""A tenant's access settings (SPEC section 15: MFA for API logins, IP allow and deny lists) are
edited in the tenant admin like every other tenant field."""

from __future__ import annotations

from tenancy.models import Tenant
from tests.control_plane import admin_url


def tenant_form(tenant: Tenant, **overrides) -> dict:
    subscription = tenant.subscription
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "plan": tenant.plan,
        "read_only_reason": "",
        "ip_allow": "",
        "ip_deny": "",
        "subscription-TOTAL_FORMS": "1",
        "subscription-INITIAL_FORMS": "1",
        "subscription-0-id": str(subscription.pk),
        "subscription-0-tenant": str(tenant.pk),
        "subscription-0-status": subscription.status,
        "subscription-0-current_period_end_0": subscription.current_period_end.strftime("%Y-%m-%d"),
        "subscription-0-current_period_end_1": subscription.current_period_end.strftime("%H:%M:%S"),
        "subscription-0-grace_days": str(subscription.grace_days),
    }
    data.update(overrides)
    return data


def test_the_tenant_page_offers_mfa_and_the_ip_lists(admin_client, tenant):
    page = admin_client.get(admin_url(Tenant, "change", tenant.pk)).content.decode()

    for name in ("mfa_required", "ip_allow", "ip_deny"):
        assert f'name="{name}"' in page


def test_staff_set_mfa_and_the_ip_lists_of_a_tenant(admin_client, tenant):
    data = tenant_form(tenant, mfa_required="on", ip_allow="10.0.0.0/8, 192.168.1.0/24", ip_deny="10.6.6.6")

    response = admin_client.post(admin_url(Tenant, "change", tenant.pk), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.mfa_required is True
    assert tenant.ip_allow == ["10.0.0.0/8", "192.168.1.0/24"]
    assert tenant.ip_deny == ["10.6.6.6"]


def test_a_bad_network_is_refused_and_nothing_is_saved(admin_client, tenant):
    data = tenant_form(tenant, mfa_required="on", ip_allow="10.0.0.0/8, not-a-network")

    response = admin_client.post(admin_url(Tenant, "change", tenant.pk), data)

    assert response.status_code == 200
    assert "not an IP network" in str(response.context["adminform"].form.errors["ip_allow"])
    tenant.refresh_from_db()
    assert (tenant.mfa_required, tenant.ip_allow) == (False, [])
