"""The audit trail: who changed what (before/after), from the admin, the API or the system."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from alerts.models import NotificationRule
from registry.models import ApiKey, Service, Target
from tenancy.audit import trail as audit
from tenancy.models import AuditEvent, Subscription, Tenant, User
from tests.control_plane import PROBLEM, admin_url
from tests.tenancy.test_admin import tenant_form

MANAGE = "/api/manage"
REASON = "overdue"


def events_of(obj) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(model=obj._meta.label_lower, object_id=str(obj.pk)).order_by("pk"))


def dumped(events) -> str:
    return json.dumps([audit.event_record(event) for event in events])


@pytest.fixture
def staff_browser(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def other_tenant(db) -> Tenant:
    other = Tenant.objects.create(name="Bakery Sevilla", slug="sevilla")
    Subscription.objects.create(tenant=other, current_period_end=timezone.now() + timedelta(days=9))
    return other


# --- Admin and API changes --------------------------------------------------------------


def test_admin_and_api_changes_to_a_tenant_are_recorded_with_source_actor_and_values(
    staff_browser, staff_client, staff_user, tenant
):
    toggled = staff_browser.post(
        admin_url(Tenant, "changelist"),
        {
            "action": "toggle_read_only", "_selected_action": [tenant.pk],
            "post": "yes", "reason": REASON,
        },
    )  # fmt: skip
    patched = staff_client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"read_only": False}, format="json")

    assert toggled.status_code == 302 and patched.status_code == 200, patched.content
    by_admin, by_api = events_of(tenant)[-2:]
    assert (by_admin.source, by_admin.action) == ("admin", "update")
    assert (by_api.source, by_api.action) == ("api", "update")
    for event in (by_admin, by_api):
        assert event.actor == staff_user and event.actor_repr == "staffer"
        assert event.tenant == tenant and event.tenant_slug == "acme"
        assert event.object_repr == "Acme Bakery"
    assert by_admin.changes == {"read_only": [False, True], "read_only_reason": ["", REASON]}
    assert by_api.changes == {"read_only": [True, False], "read_only_reason": [REASON, ""]}
    assert by_admin.request_id == toggled["X-Request-ID"]
    assert by_api.request_id == patched["X-Request-ID"]


def test_the_admin_change_form_records_only_the_fields_that_changed(staff_browser, tenant):
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    response = staff_browser.post(
        admin_url(Tenant, "change", tenant.pk),
        tenant_form(tenant, plan="enterprise", read_only="on", read_only_reason=REASON),
    )

    assert response.status_code == 302
    [event] = AuditEvent.objects.filter(pk__gt=last)
    assert (event.model, event.source, event.action) == ("tenancy.tenant", "admin", "update")
    assert event.changes == {
        "plan": ["standard", "enterprise"],
        "read_only": [False, True],
        "read_only_reason": ["", REASON],
    }


def test_a_token_authenticated_api_change_is_attributed_to_the_token_user(tenant):
    # DRF authenticates the token inside the view, after every middleware has run.
    robot = User.objects.create_user("ops-robot", password="x" * 12, is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=robot).key}")

    response = client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"plan": "free"}, format="json")

    assert response.status_code == 200, response.content
    event = events_of(tenant)[-1]
    assert (event.actor, event.actor_repr, event.source) == (robot, "ops-robot", "api")
    assert event.changes == {"plan": ["standard", "free"]}


def test_changes_outside_a_request_are_system_events_with_every_field_on_create(db):
    tenant = Tenant.objects.create(name="Bakery Porto", slug="porto")
    ends = timezone.now() + timedelta(days=30)
    subscription = Subscription.objects.create(tenant=tenant, current_period_end=ends)

    [created] = events_of(tenant)
    assert (created.source, created.action, created.actor, created.actor_repr) == (
        "system", "create", None, "system",
    )  # fmt: skip
    assert created.changes["name"] == [None, "Bakery Porto"]
    assert created.changes["read_only"] == [None, False]
    assert created.changes["ip_allow"] == [None, []]
    assert all(before is None for before, _ in created.changes.values())
    assert "created_at" not in created.changes and "updated_at" not in created.changes
    [sub_created] = events_of(subscription)
    assert sub_created.tenant == tenant and sub_created.tenant_slug == "porto"
    assert sub_created.changes["tenant"] == [None, {"id": tenant.pk, "repr": "Bakery Porto"}]
    assert sub_created.changes["current_period_end"] == [None, ends.isoformat()]


def test_registry_objects_are_audited_without_a_tenant(staff_client):
    response = staff_client.post(
        f"{MANAGE}/rate-policies/",
        {"name": "burst", "scope": "ip", "limit": 10, "window_seconds": 60},
        format="json",
    )

    assert response.status_code == 201, response.content
    [event] = AuditEvent.objects.filter(model="registry.ratepolicy")
    assert (event.source, event.action, event.tenant, event.tenant_slug) == (
        "api",
        "create",
        None,
        "",
    )
    assert event.changes["limit"] == [None, 10]


# --- Secrets ----------------------------------------------------------------------------


def test_api_key_create_rotate_and_delete_are_recorded_without_the_hash_or_the_secret(staff_client, tenant):
    created = staff_client.post(
        f"{MANAGE}/api-keys/", {"tenant": "acme", "name": "pos", "scopes": ["read"]}, format="json"
    )
    key = ApiKey.objects.get(pk=created.json()["id"])
    first_hash = key.key_hash
    rotated = staff_client.post(f"{MANAGE}/api-keys/{key.pk}/rotate/")
    key.refresh_from_db()
    deleted = staff_client.delete(f"{MANAGE}/api-keys/{key.pk}/")

    assert (created.status_code, rotated.status_code, deleted.status_code) == (201, 200, 204)
    events = events_of(key)
    assert [e.action for e in events] == ["create", "update", "delete"]
    assert all(e.source == "api" and e.tenant_slug == "acme" for e in events)
    assert events[0].changes["key_hash"] == [None, audit.REDACTED]
    assert events[0].changes["name"] == [None, "pos"]
    assert events[1].changes["key_hash"] == [audit.REDACTED, audit.REDACTED]
    assert events[2].changes["key_hash"] == [audit.REDACTED, None]
    listed = staff_client.get(f"{MANAGE}/audit-events/", {"model": "registry.apikey"})
    everything = dumped(events) + listed.content.decode()
    for secret in (
        created.json()["secret"], rotated.json()["secret"], first_hash, key.key_hash,
    ):  # fmt: skip
        assert secret not in everything


def test_a_password_change_records_redacted_values_only(staff_browser, member_user):
    old_hash = member_user.password
    response = staff_browser.post(
        reverse("admin:auth_user_password_change", args=[member_user.pk]),
        {
            "password1": "n3w-Pass-phrase!",
            "password2": "n3w-Pass-phrase!",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    member_user.refresh_from_db()
    event = events_of(member_user)[-1]
    assert (event.source, event.action, event.tenant_slug) == ("admin", "update", "acme")
    assert event.changes == {"password": [audit.REDACTED, audit.REDACTED]}
    text = dumped(events_of(member_user))
    assert old_hash not in text and member_user.password not in text
    assert "n3w-Pass-phrase!" not in text


def test_an_identity_provider_client_secret_is_redacted(db):
    from tenancy.models import IdentityProvider

    provider = IdentityProvider.objects.create(
        name="Auth0", issuer="https://a.example/", jwks_url="https://a.example/jwks",
        client_secret="first-s3cret",
    )  # fmt: skip
    provider.client_secret = "second-s3cret"
    provider.save()

    created, updated = events_of(provider)
    assert created.changes["client_secret"] == [None, audit.REDACTED]
    assert updated.changes == {"client_secret": [audit.REDACTED, audit.REDACTED]}
    assert "s3cret" not in dumped([created, updated])


# --- Nothing to record ------------------------------------------------------------------


def test_an_update_that_changes_nothing_records_nothing(staff_client, tenant, member_user):
    target = Target.objects.create(
        service=Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales"),
        url="http://10.0.0.5:8080",
    )
    before = AuditEvent.objects.count()

    tenant.save()
    unchanged = staff_client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"plan": "standard"}, format="json")
    target.healthy = False  # the health sweep's state is not a management change
    target.save(update_fields=["healthy", "last_checked_at", "updated_at"])
    logged_in = Client().login(username="member", password="member-pass-123")  # nor last_login

    assert unchanged.status_code == 200 and logged_in
    assert AuditEvent.objects.count() == before


def test_raw_fixture_loading_records_nothing(db, tmp_path):
    fixture = tmp_path / "tenants.json"
    fixture.write_text(
        json.dumps([
            {"model": "tenancy.tenant", "pk": 900, "fields": {
                "name": "Fixture Bakery", "slug": "fixture", "plan": "free",
                "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
            }},
            {"model": "alerts.notificationrule", "pk": 901, "fields": {
                "tenant": 900, "channel": "sse", "min_severity": "info",
                "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
            }},
        ])
    )  # fmt: skip

    call_command("loaddata", str(fixture), verbosity=0)

    assert Tenant.objects.filter(slug="fixture").exists()
    assert NotificationRule.objects.filter(pk=901).exists()
    assert not AuditEvent.objects.exists()


# --- Export -----------------------------------------------------------------------------


@pytest.fixture
def two_trails(staff_client, tenant, other_tenant, member_user) -> None:
    """Changes to both tenants and objects they own, interleaved."""
    for slug, name in (("acme", "pos"), ("sevilla", "robot")):
        staff_client.post(f"{MANAGE}/api-keys/", {"tenant": slug, "name": name}, format="json")
    staff_client.patch(f"{MANAGE}/tenants/{other_tenant.pk}/", {"plan": "free"}, format="json")
    NotificationRule.objects.create(tenant=tenant, channel="sse")
    staff_client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"plan": "enterprise"}, format="json")


def assert_is_the_tenants_trail(export: dict, tenant: Tenant) -> None:
    events = export["events"]
    expected = AuditEvent.objects.filter(tenant=tenant).order_by("created_at", "pk")
    assert export["tenant"] == tenant.slug and export["exported_at"]
    assert [e["id"] for e in events] == [e.pk for e in expected]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)
    assert {e["tenant"] for e in events} == {tenant.slug}
    assert {"tenancy.tenant", "tenancy.subscription", "tenancy.user", "registry.apikey",
            "alerts.notificationrule"} <= {e["model"] for e in events}  # fmt: skip


@pytest.mark.usefixtures("two_trails")
def test_the_api_exports_exactly_one_tenants_trail_oldest_first(staff_client, tenant):
    response = staff_client.get(f"{MANAGE}/tenants/{tenant.pk}/audit/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    export = json.loads(response.content)
    assert_is_the_tenants_trail(export, tenant)
    assert "sevilla" not in response.content.decode().lower()
    assert export["events"][-1]["changes"] == {"plan": ["standard", "enterprise"]}


@pytest.mark.usefixtures("two_trails")
def test_the_admin_action_downloads_the_same_export(staff_browser, tenant, other_tenant):
    url = admin_url(Tenant, "changelist")
    download = staff_browser.post(
        url, {"action": "export_audit_trail", "_selected_action": [tenant.pk], "index": "0"}
    )
    both = staff_browser.post(
        url,
        {"action": "export_audit_trail", "_selected_action": [tenant.pk, other_tenant.pk],
         "index": "0"},
        follow=True,
    )  # fmt: skip

    assert download.status_code == 200
    assert download["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    assert_is_the_tenants_trail(json.loads(download.content), tenant)
    assert both["Content-Type"].startswith("text/html")
    assert "Select one tenant" in both.content.decode()


def test_the_export_needs_staff(member_client, tenant):
    response = member_client.get(f"{MANAGE}/tenants/{tenant.pk}/audit/")

    assert response.status_code == 403
    assert response["Content-Type"] == PROBLEM


# --- The audit-events API and admin ------------------------------------------------------


@pytest.mark.usefixtures("two_trails")
def test_audit_events_are_listed_newest_first_and_filtered(staff_client):
    everything = staff_client.get(f"{MANAGE}/audit-events/").json()
    keys = staff_client.get(
        f"{MANAGE}/audit-events/",
        {"tenant": "sevilla", "model": "registry.apikey", "action": "create"},
    ).json()
    bad = staff_client.get(f"{MANAGE}/audit-events/", {"action": "rename"})
    write = staff_client.post(f"{MANAGE}/audit-events/", {}, format="json")

    ids = [row["id"] for row in everything["results"]]
    assert ids == sorted(ids, reverse=True) and everything["count"] == AuditEvent.objects.count()
    [key_event] = keys["results"]
    assert key_event["tenant"] == "sevilla" and key_event["object_repr"].startswith("robot (")
    assert key_event == audit.event_record(AuditEvent.objects.get(pk=key_event["id"]))
    assert bad.status_code == 400 and bad["Content-Type"] == PROBLEM
    assert "action" in bad.json()["errors"]
    assert write.status_code == 405


@pytest.mark.django_db(transaction=True)
def test_deleting_a_tenant_keeps_its_trail_under_its_slug(staff_user):
    # transaction=True: the deletion commits, so a dangling reference would fail here.
    client = APIClient()
    client.force_login(staff_user)
    created = client.post(f"{MANAGE}/tenants/", {"name": "Gone", "slug": "gone"}, format="json")
    client.post(f"{MANAGE}/api-keys/", {"tenant": "gone", "name": "pos"}, format="json")

    deleted = client.delete(f"{MANAGE}/tenants/{created.json()['id']}/")

    assert deleted.status_code == 204
    trail = client.get(f"{MANAGE}/audit-events/", {"tenant": "gone"}).json()["results"]
    assert sorted((e["model"], e["action"]) for e in trail) == [
        ("registry.apikey", "create"), ("registry.apikey", "delete"),
        ("tenancy.tenant", "create"), ("tenancy.tenant", "delete"),
    ]  # fmt: skip
    assert not AuditEvent.objects.filter(tenant__isnull=False, tenant_slug="gone").exists()


def test_the_audit_admin_is_read_only_and_filterable(staff_browser, tenant, member_user):
    member_user.set_password("an0ther-pass")
    member_user.save()
    event = events_of(member_user)[-1]

    listing = staff_browser.get(admin_url(AuditEvent, "changelist"), {"source__exact": "system"})
    detail = staff_browser.get(admin_url(AuditEvent, "change", event.pk))
    add = staff_browser.get(admin_url(AuditEvent, "add"))
    delete = staff_browser.get(admin_url(AuditEvent, "delete", event.pk))

    assert listing.status_code == 200 and "member" in listing.content.decode()
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "&quot;&lt;redacted&gt;&quot;" in body and member_user.password not in body
    assert 'name="_save"' not in body
    assert add.status_code == 403 and delete.status_code == 403


# --- Failure handling -------------------------------------------------------------------


def test_an_audit_failure_is_logged_and_does_not_break_the_change(staff_client, tenant, monkeypatch, caplog):
    def broken_create(**fields):
        with connection.cursor() as cursor:  # a real database error inside the change's transaction
            cursor.execute("SELECT * FROM no_such_audit_table")

    monkeypatch.setattr(AuditEvent.objects, "create", broken_create)

    with caplog.at_level(logging.ERROR, logger="gateway.audit"):
        response = staff_client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"plan": "enterprise"}, format="json")

    assert response.status_code == 200, response.content
    tenant.refresh_from_db()
    assert tenant.plan == "enterprise"
    [record] = [r for r in caplog.records if r.name == "gateway.audit"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "tenancy.Tenant" in record.getMessage()


@pytest.mark.django_db(transaction=True)
async def test_the_asgi_handler_attributes_changes_like_the_test_client(staff_user):
    # Production serves Django through ASGI: sync middleware and views run in worker threads.
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    tenant = await Tenant.objects.acreate(name="Async Bakery", slug="async")
    client = AsyncClient()
    await client.aforce_login(staff_user)

    response = await client.patch(
        f"{MANAGE}/tenants/{tenant.pk}/", {"plan": "free"}, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    event = (await sync_to_async(events_of)(tenant))[-1]
    assert (event.source, event.actor_repr, event.request_id) == (
        "api", "staffer", response["X-Request-ID"],
    )  # fmt: skip
    assert event.changes == {"plan": ["standard", "free"]}
