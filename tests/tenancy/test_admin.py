"""The tenancy admin: read-only mode with a reason, per-tenant activity, users, access control."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from gateway_project.core import broadcast
from registry.config_version import CONFIG_CHANNEL, current_config_version
from registry.models import ApiKey
from tenancy.admin import READ_ONLY_REASON_REQUIRED
from tenancy.models import DemoSession, Subscription, Tenant, User
from tests.control_plane import admin_url

REASON = "Invoice 2024-117 unpaid"


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def log_of(obj) -> list[str]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("pk")
    return [entry.get_change_message() for entry in entries]


def toggle(client, tenants, **confirmation):
    data = {"action": "toggle_read_only", "_selected_action": [t.pk for t in tenants]}
    if confirmation:
        data.update(post="yes", **confirmation)
    else:
        data["index"] = "0"
    return client.post(admin_url(Tenant, "changelist"), data, follow=True)


def activity_table(page: str) -> str:
    start = page.index('id="tenant-activity"')
    return page[start : page.index("</table>", start)]


@pytest.fixture
def announced(monkeypatch) -> list[str]:
    """Config versions announced to this process's listeners (what a data plane hears)."""
    monkeypatch.setattr(broadcast, "_listeners", {})
    heard: list[str] = []
    broadcast.listen(CONFIG_CHANNEL, heard.append)
    return heard


# --- Toggle read-only -------------------------------------------------------------------


def test_toggle_action_asks_for_a_reason_first(admin_client, tenant):
    page = toggle(admin_client, [tenant])

    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="reason"' in body and "Yes, toggle read-only" in body
    assert "Acme Bakery" in body
    tenant.refresh_from_db()
    assert not tenant.read_only


def test_toggle_action_sets_read_only_logs_it_and_bumps_the_config_version(
    admin_client, tenant, announced, django_capture_on_commit_callbacks
):
    version = current_config_version()

    with django_capture_on_commit_callbacks(execute=True):
        response = toggle(admin_client, [tenant], reason=REASON)

    tenant.refresh_from_db()
    assert (tenant.read_only, tenant.read_only_reason) == (True, REASON)
    assert "Read-only mode toggled; now read-only: Acme Bakery." in messages_of(response)
    assert log_of(tenant) == [f"Turned read-only on: {REASON}"]
    assert current_config_version() > version
    assert announced[-1] == str(current_config_version())


def test_toggling_on_without_a_reason_is_refused_with_a_visible_error(admin_client, tenant):
    version = current_config_version()

    response = toggle(admin_client, [tenant], reason="  ")

    assert response.status_code == 200
    assert READ_ONLY_REASON_REQUIRED in response.content.decode()
    tenant.refresh_from_db()
    assert not tenant.read_only
    assert log_of(tenant) == []
    assert current_config_version() == version


def test_toggling_off_needs_no_reason_and_clears_it(admin_client, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(read_only=True, read_only_reason=REASON)

    response = toggle(admin_client, [tenant], reason="")

    tenant.refresh_from_db()
    assert (tenant.read_only, tenant.read_only_reason) == (False, "")
    assert "Read-only mode toggled; writable again: Acme Bakery." in messages_of(response)
    assert log_of(tenant) == ["Turned read-only off."]


def test_toggle_flips_each_selected_tenant(admin_client, tenant):
    locked = Tenant.objects.create(
        name="Bakery Sevilla", slug="bakery-sevilla", read_only=True, read_only_reason="audit"
    )

    toggle(admin_client, [tenant, locked], reason=REASON)

    tenant.refresh_from_db()
    locked.refresh_from_db()
    assert (tenant.read_only, tenant.read_only_reason) == (True, REASON)
    assert (locked.read_only, locked.read_only_reason) == (False, "")


def tenant_form(tenant: Tenant, **overrides) -> dict:
    subscription = tenant.subscription
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "plan": tenant.plan,
        "read_only_reason": "",
        "subscription-TOTAL_FORMS": "1",
        "subscription-INITIAL_FORMS": "1",
        "subscription-MIN_NUM_FORMS": "0",
        "subscription-MAX_NUM_FORMS": "1",
        "subscription-0-id": subscription.pk,
        "subscription-0-tenant": tenant.pk,
        "subscription-0-status": subscription.status,
        "subscription-0-current_period_end_0": subscription.current_period_end.strftime("%Y-%m-%d"),
        "subscription-0-current_period_end_1": subscription.current_period_end.strftime("%H:%M:%S"),
        "subscription-0-grace_days": subscription.grace_days,
    }
    data.update(overrides)
    return data


def test_the_change_form_sets_read_only_only_with_a_reason(admin_client, tenant):
    url = admin_url(Tenant, "change", tenant.pk)

    refused = admin_client.post(url, tenant_form(tenant, read_only="on"))
    tenant.refresh_from_db()
    assert refused.status_code == 200
    assert READ_ONLY_REASON_REQUIRED in refused.content.decode()
    assert not tenant.read_only

    version = current_config_version()
    admin_client.post(url, tenant_form(tenant, read_only="on", read_only_reason=REASON))
    tenant.refresh_from_db()
    assert (tenant.read_only, tenant.read_only_reason) == (True, REASON)
    assert current_config_version() > version
    assert log_of(tenant) == ["Changed Read only and Read only reason."]


def test_the_changelist_checkbox_needs_a_reason_too(admin_client, tenant):
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": tenant.pk,
        "form-0-read_only": "on",
        "form-0-read_only_reason": "",
        "_save": "Save",
    }

    refused = admin_client.post(admin_url(Tenant, "changelist"), data)
    tenant.refresh_from_db()
    assert READ_ONLY_REASON_REQUIRED in refused.content.decode()
    assert not tenant.read_only

    admin_client.post(admin_url(Tenant, "changelist"), {**data, "form-0-read_only_reason": REASON})
    tenant.refresh_from_db()
    assert (tenant.read_only, tenant.read_only_reason) == (True, REASON)


# --- Per-tenant activity ----------------------------------------------------------------


def test_tenant_page_lists_changes_to_its_subscription_and_keys_newest_first(admin_client, tenant):
    other = Tenant.objects.create(name="Bakery Sevilla", slug="bakery-sevilla")
    for owner, name in ((tenant, "pos-terminal"), (other, "sevilla-robot")):
        admin_client.post(
            admin_url(ApiKey, "add"),
            {
                "tenant": owner.pk,
                "name": name,
                "role": "member",
                "scopes": "read",
                "expires_at_0": "",
                "expires_at_1": "",
            },
        )
    subscription = tenant.subscription
    admin_client.post(
        admin_url(Subscription, "change", subscription.pk),
        {
            "tenant": tenant.pk,
            "status": "past_due",
            "grace_days": "7",
            "current_period_end_0": subscription.current_period_end.strftime("%Y-%m-%d"),
            "current_period_end_1": subscription.current_period_end.strftime("%H:%M:%S"),
        },
    )
    toggle(admin_client, [tenant], reason=REASON)

    page = admin_client.get(admin_url(Tenant, "change", tenant.pk)).content.decode()

    table = activity_table(page)
    rows = [row for row in table.split("<tr>")[2:]]
    assert len(rows) == 3
    assert f"Turned read-only on: {REASON}" in rows[0]
    assert "Subscription" in rows[1] and "Changed Status." in rows[1]
    assert "API key" in rows[2] and "pos-terminal" in rows[2] and "Added." in rows[2]
    assert "sevilla-robot" not in table


def test_tenant_history_page_shows_the_toggle(admin_client, tenant):
    toggle(admin_client, [tenant], reason=REASON)

    page = admin_client.get(admin_url(Tenant, "history", tenant.pk)).content.decode()

    assert f"Turned read-only on: {REASON}" in page


# --- Other pages and access -------------------------------------------------------------


@pytest.fixture
def demo_session(tenant):
    return DemoSession.objects.create(
        key="d" * 40, tenant=tenant, expires_at=timezone.now() + timedelta(minutes=30)
    )


@pytest.mark.parametrize("model", [Tenant, Subscription, User, DemoSession], ids=lambda model: model.__name__)
def test_changelist_and_change_form_render_for_staff(admin_client, tenant, member_user, demo_session, model):
    obj = {
        Tenant: tenant,
        Subscription: tenant.subscription,
        User: member_user,
        DemoSession: demo_session,
    }[model]

    changelist = admin_client.get(admin_url(model, "changelist"))
    change = admin_client.get(admin_url(model, "change", obj.pk))

    assert changelist.status_code == 200
    assert change.status_code == 200
    assert escape(str(obj)) in change.content.decode()


def test_demo_sessions_are_read_only_and_hide_their_key(admin_client, demo_session):
    page = admin_client.get(admin_url(DemoSession, "change", demo_session.pk)).content.decode()

    assert 'name="_save"' not in page
    assert demo_session.key not in page
    assert admin_client.get(admin_url(DemoSession, "add")).status_code == 403


def test_staff_add_a_user_with_tenant_and_role(admin_client, tenant):
    response = admin_client.post(
        admin_url(User, "add"),
        {
            "username": "baker",
            "email": "baker@acme.example",
            "tenant": tenant.pk,
            "role": "viewer",
            "usable_password": "true",
            "password1": "knead-the-dough-42",
            "password2": "knead-the-dough-42",
        },
    )

    assert response.status_code == 302
    user = User.objects.get(username="baker")
    assert (user.tenant, user.role) == (tenant, "viewer")
    assert user.check_password("knead-the-dough-42")


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_non_staff_are_sent_to_the_admin_login(who, member_user, tenant):
    client = Client()
    if who == "member":
        client.force_login(member_user)

    page = client.get(admin_url(Tenant, "changelist"))
    action = client.post(
        admin_url(Tenant, "changelist"),
        {
            "action": "toggle_read_only",
            "_selected_action": [tenant.pk],
            "post": "yes",
            "reason": REASON,
        },
    )

    for response in (page, action):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    tenant.refresh_from_db()
    assert not tenant.read_only
