"""Nothing saved can break the gateway (SPEC section 16): every field is range-checked by the
model, so the management API and the admin refuse the same values, name the field, save
nothing, and the data plane's snapshot keeps compiling and keeps following good saves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from proxy.snapshot import compile_snapshot
from registry.constants import (
    BREAKER_FAILURE_THRESHOLD_RANGE,
    BREAKER_FAILURE_WINDOW_RANGE,
    BREAKER_MINIMUM_THROUGHPUT_RANGE,
    BREAKER_RECOVERY_TIMEOUT_RANGE,
    BREAKER_SUCCESS_THRESHOLD_RANGE,
    CACHE_TTL_RANGE,
    CONNECT_TIMEOUT_RANGE,
    HEALTH_INTERVAL_RANGE,
    MAX_BODY_BYTES_RANGE,
    READ_TIMEOUT_RANGE,
    RETRIES_RANGE,
)
from registry.models import ApiKey, RatePolicy, Service, ServiceVersion, Target
from tenancy.constants import GRACE_DAYS_RANGE
from tenancy.models import IdentityProvider, Subscription, Tenant
from tests.control_plane import PROBLEM, admin_url

MANAGE = "/api/manage"
INT64_MAX = 9223372036854775807
ONE_MEGABYTE = "x" * 1_000_000
YEAR_2000 = "2000-01-01T00:00:00Z"


@pytest.fixture
def world(tenant, service, target, api_key):
    """One of everything the bad values are aimed at, plus a second tenant to clash with."""
    Tenant.objects.create(name="Bakery Madrid", slug="bakery-madrid")
    policy = RatePolicy.objects.create(
        name="tenant-minute", scope="tenant", limit=300, window_seconds=60, algorithm="gcra", burst=10
    )
    provider = IdentityProvider.objects.create(
        name="Partner", issuer="https://auth.partner.example", jwks_url="https://auth.partner.example/jwks"
    )
    return {
        "subscriptions": tenant.subscription,
        "services": service,
        "targets": target,
        "rate-policies": policy,
        "api-keys": api_key,
        "tenants": tenant,
        "identity-providers": provider,
    }


def row(obj) -> dict:
    """The object's stored columns, re-read from the database (timestamps left out)."""
    values = type(obj).objects.filter(pk=obj.pk).values().get()
    return {name: value for name, value in values.items() if name != "updated_at"}


def assert_problem_names(response, field_name: str) -> dict:
    assert response.status_code == 400, response.content[:500]
    assert response["Content-Type"] == PROBLEM
    errors = response.json()["errors"]
    assert field_name in errors, errors
    return errors


def assert_snapshot_compiles() -> None:
    snapshot = compile_snapshot()
    assert snapshot.loaded and "/api/v1/sales" in snapshot.services_by_prefix


# --- The management API: a PATCH per bad value ---------------------------------------------

BAD_UPDATES = [
    ("subscriptions", "grace_days", 2932896),
    ("subscriptions", "grace_days", GRACE_DAYS_RANGE[1] + 1),
    ("subscriptions", "current_period_end", "9999-12-31T00:00:00Z"),
    ("services", "connect_timeout", 0),
    ("services", "connect_timeout", 3600),
    ("services", "read_timeout", 86400),
    ("services", "retries", 100),
    ("services", "breaker_failure_threshold", INT64_MAX),
    ("services", "breaker_failure_window", 10**9),
    ("services", "breaker_minimum_throughput", 10**6),
    ("services", "breaker_recovery_timeout", 10**9),
    ("services", "breaker_success_threshold", 10**4),
    ("services", "health_interval", 10**8),
    ("services", "max_body_bytes", 2**40),
    ("services", "cache_ttl", 10**8),
    ("services", "read_roles", ["god"]),
    ("services", "write_roles", ["viewer", "god"]),
    ("services", "read_scopes", ["root"]),
    ("services", "write_scopes", ["root"]),
    ("services", "description", ONE_MEGABYTE),
    ("services", "slug", "SALES"),
    ("services", "upstream_path", "/v2\r\nHost: evil.example"),
    ("services", "health_path", "/health/../admin"),
    ("services", "default_version", "latest"),
    ("services", "header_transforms", {"request": {"add": ["x-a"]}}),
    ("targets", "weight", 10**6),
    ("rate-policies", "plan", "platinum"),
    ("rate-policies", "limit", 0),
    ("rate-policies", "window_seconds", 10**9),
    ("rate-policies", "burst", 10**12),
    ("api-keys", "scopes", ["root"]),
    ("api-keys", "expires_at", YEAR_2000),
    ("tenants", "slug", "Bakery-Madrid"),
    ("identity-providers", "role_mapping", {"partner-admin": "god"}),
]


@pytest.mark.parametrize(
    ("resource", "field_name", "value"),
    BAD_UPDATES,
    ids=[f"{resource}.{name}={str(value)[:24]}" for resource, name, value in BAD_UPDATES],
)
def test_the_api_refuses_a_bad_value_names_the_field_and_saves_nothing(
    staff_client, world, resource, field_name, value
):
    obj = world[resource]
    before = row(obj)

    response = staff_client.patch(f"{MANAGE}/{resource}/{obj.pk}/", {field_name: value}, format="json")

    assert_problem_names(response, field_name)
    assert row(obj) == before
    assert_snapshot_compiles()


# --- The management API: creations that must not happen ------------------------------------


def service_body(**overrides) -> dict:
    return {"name": "Sales X", "slug": "sales-x", "path_prefix": "/api/v1/sales-x", **overrides}


BAD_CREATIONS = [
    ("tenants", {"name": "Bakery Madrid Two", "slug": "Bakery-Madrid"}, "slug"),
    ("services", service_body(slug="SALES"), "slug"),
    ("services", service_body(path_prefix="/api/v1/sales/x"), "path_prefix"),
    ("services", service_body(description=ONE_MEGABYTE), "description"),
    ("rate-policies", {"name": "platinum", "plan": "platinum", "limit": 5, "window_seconds": 1}, "plan"),
    ("api-keys", {"tenant": "acme", "name": "robot", "scopes": ["root"]}, "scopes"),
    ("api-keys", {"tenant": "acme", "name": "robot", "expires_at": YEAR_2000}, "expires_at"),
]


@pytest.mark.parametrize(
    ("resource", "body", "field_name"),
    BAD_CREATIONS,
    ids=[f"{resource}.{name}" for resource, _, name in BAD_CREATIONS],
)
def test_the_api_refuses_to_create_with_a_bad_value(staff_client, world, resource, body, field_name):
    model = type(world[resource])
    count = model.objects.count()

    response = staff_client.post(f"{MANAGE}/{resource}/", body, format="json")

    assert_problem_names(response, field_name)
    assert model.objects.count() == count
    assert_snapshot_compiles()


def test_a_refused_grace_days_leaves_config_flowing_and_the_next_good_save_is_compiled(staff_client, world):
    subscription = world["subscriptions"]
    url = f"{MANAGE}/subscriptions/{subscription.pk}/"

    refused = staff_client.patch(url, {"grace_days": 2932896}, format="json")
    accepted = staff_client.patch(url, {"grace_days": 30}, format="json")

    assert "grace_days" in refused.json()["errors"]
    assert "365" in refused.json()["errors"]["grace_days"][0]
    assert accepted.status_code == 200, accepted.content
    expected = (subscription.current_period_end + timedelta(days=30)).timestamp()
    assert compile_snapshot().tenants["acme"].grace_ends_at == expected


@pytest.mark.parametrize(
    ("field_name", "bad", "good", "compiled"),
    [
        ("breaker_failure_threshold", INT64_MAX, 7, lambda s: s.breaker.failure_threshold),
        ("read_roles", ["god"], ["member"], lambda s: s.read_roles),
        ("write_scopes", ["root"], ["admin"], lambda s: s.write_scopes),
        ("read_timeout", 86400, 45.0, lambda s: s.read_timeout),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_after_a_refused_service_change_a_good_one_reaches_the_snapshot(
    staff_client, world, field_name, bad, good, compiled
):
    url = f"{MANAGE}/services/{world['services'].pk}/"

    refused = staff_client.patch(url, {field_name: bad}, format="json")
    accepted = staff_client.patch(url, {field_name: good}, format="json")

    assert refused.status_code == 400 and accepted.status_code == 200, accepted.content
    value = compiled(compile_snapshot().services_by_prefix["/api/v1/sales"])
    assert value == (frozenset(good) if isinstance(good, list) else good)


def test_an_expired_key_can_still_be_renamed_but_not_given_a_past_expiry(staff_client, api_key):
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(days=1))
    url = f"{MANAGE}/api-keys/{api_key.pk}/"

    renamed = staff_client.patch(url, {"name": "old-robot"}, format="json")
    refused = staff_client.patch(url, {"expires_at": YEAR_2000}, format="json")
    extended = staff_client.patch(url, {"expires_at": "2999-01-01T00:00:00Z"}, format="json")

    assert renamed.status_code == 200, renamed.content
    assert "future" in assert_problem_names(refused, "expires_at")["expires_at"][0]
    assert extended.status_code == 200 and extended.json()["is_active"] is True


# --- Overlapping prefixes --------------------------------------------------------------------


def test_a_prefix_below_another_service_is_refused_naming_that_service(staff_client, service):
    response = staff_client.post(
        f"{MANAGE}/services/", service_body(path_prefix="/api/v1/sales/x", auth_required=False), format="json"
    )

    message = assert_problem_names(response, "path_prefix")["path_prefix"][0]
    assert "'sales' (/api/v1/sales)" in message and "shadows" in message
    assert not Service.objects.filter(slug="sales-x").exists()


def test_a_prefix_below_another_service_is_accepted_once_confirmed_in_shadows(staff_client, service):
    response = staff_client.post(
        f"{MANAGE}/services/", service_body(path_prefix="/api/v1/sales/x", shadows=["sales"]), format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["shadows"] == ["sales"]
    snapshot = compile_snapshot()
    assert snapshot.match("/api/v1/sales/x/secret").slug == "sales-x"
    assert snapshot.match("/api/v1/sales/y").slug == "sales"


def test_a_shorter_prefix_above_an_existing_longer_one_takes_nothing_and_needs_no_confirmation(
    staff_client, db
):
    Service.objects.create(name="Orders Export", slug="orders-export", path_prefix="/api/v1/orders/export")

    response = staff_client.post(
        f"{MANAGE}/services/",
        service_body(name="Orders", slug="orders", path_prefix="/api/v1/orders"),
        format="json",
    )

    assert response.status_code == 201, response.content
    assert compile_snapshot().match("/api/v1/orders/export/1").slug == "orders-export"


def test_a_prefix_taking_a_published_version_alias_needs_confirmation_too(staff_client, service):
    ServiceVersion.objects.create(service=service, version="2")

    refused = staff_client.post(
        f"{MANAGE}/services/", service_body(path_prefix="/api/v2/sales"), format="json"
    )

    assert "'sales'" in assert_problem_names(refused, "path_prefix")["path_prefix"][0]


# --- ?since= on list endpoints -----------------------------------------------------------------


@pytest.mark.parametrize("resource", ["services", "tenants", "audit-events", "alerts", "api-keys"])
def test_a_bad_since_is_a_problem_naming_the_parameter(staff_client, world, resource):
    response = staff_client.get(f"{MANAGE}/{resource}/", {"since": "notadate"})

    assert "since" in assert_problem_names(response, "since")


def test_since_lists_only_what_was_created_from_then_on(staff_client, world):
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()

    recent = staff_client.get(f"{MANAGE}/services/", {"since": yesterday})
    future = staff_client.get(f"{MANAGE}/services/", {"since": tomorrow})

    assert [s["slug"] for s in recent.json()["results"]] == ["sales"]
    assert future.json()["results"] == []


def test_a_nul_character_in_any_list_parameter_is_a_problem(staff_client, world):
    """PostgreSQL cannot compare text with NUL (schemathesis found this as a 500)."""
    response = staff_client.get(f"{MANAGE}/alerts/", {"service": "\x00sales", "search": "x"})

    assert "service" in assert_problem_names(response, "service")


def test_a_nul_character_in_a_related_slug_is_a_problem(staff_client, world):
    response = staff_client.post(
        f"{MANAGE}/targets/", {"service": "\x00sales", "url": "http://127.0.0.1:9001"}, format="json"
    )

    assert "service" in assert_problem_names(response, "service")


def test_since_with_an_offset_the_database_refuses_still_answers(staff_client, world):
    """Python accepts -21:06; PostgreSQL does not (schemathesis found this as a 500)."""
    far = staff_client.get(f"{MANAGE}/tenants/", {"since": "9008-01-19T06:48:10-21:06"})
    overflow = staff_client.get(f"{MANAGE}/tenants/", {"since": "9999-12-31T23:00:00-05:00"})

    assert far.status_code == 200 and far.json()["results"] == []
    assert "since" in assert_problem_names(overflow, "since")


# --- The admin: the same bad values through the change and add forms --------------------------


class _FormFields(HTMLParser):
    """What a browser would submit from the page's main form: every field with its shown value."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select: tuple[str, bool, list] | None = None
        self._textarea: str | None = None

    def _add(self, name: str, value: str) -> None:
        if "__prefix__" not in name:
            self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or not attrs.get("name") and tag != "option":
            return
        kind = attrs.get("type", "text")
        if tag == "input" and kind not in ("submit", "button", "file", "image"):
            if kind not in ("checkbox", "radio") or "checked" in attrs:
                self._add(attrs["name"], attrs.get("value", "on" if kind in ("checkbox", "radio") else ""))
        elif tag == "select":
            self._select = (attrs["name"], "multiple" in attrs, [])
        elif tag == "option" and self._select is not None:
            self._select[2].append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self._add(self._textarea, "")

    def handle_data(self, data):
        if self._textarea is not None:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            self.data[self._textarea][-1] = self.data[self._textarea][-1].removeprefix("\n")
            self._textarea = None
        elif tag == "select" and self._select is not None:
            name, multiple, options = self._select
            chosen = [value for value, selected in options if selected]
            for value in chosen or ([] if multiple or not options else [options[0][0]]):
                self._add(name, value)
            self._select = None


def admin_form(client, url: str, model) -> dict:
    page = client.get(url)
    assert page.status_code == 200
    parser = _FormFields(f"{model._meta.model_name}_form")
    parser.feed(page.content.decode())
    return parser.data


def assert_form_error_on(response, field_name: str) -> None:
    """The form came back (no redirect) with the error shown in that field's row."""
    assert response.status_code == 200
    assert field_name in response.context["adminform"].form.errors
    assert f"errors field-{field_name}" in response.content.decode()


@dataclass(frozen=True)
class AdminCase:
    resource: str
    field_name: str
    posted: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.resource}.{self.field_name}"


ADMIN_CASES = [
    AdminCase("subscriptions", "grace_days", {"grace_days": "2932896"}),
    AdminCase("subscriptions", "grace_days", {"grace_days": str(GRACE_DAYS_RANGE[1] + 1)}),
    AdminCase("services", "breaker_failure_threshold", {"breaker_failure_threshold": str(INT64_MAX)}),
    AdminCase("services", "connect_timeout", {"connect_timeout": "0"}),
    AdminCase("services", "read_timeout", {"read_timeout": "86400"}),
    AdminCase("services", "retries", {"retries": "100"}),
    AdminCase("services", "health_interval", {"health_interval": str(10**8)}),
    AdminCase("services", "max_body_bytes", {"max_body_bytes": str(2**40)}),
    AdminCase("services", "cache_ttl", {"cache_ttl": str(10**8)}),
    AdminCase("services", "read_roles", {"read_roles": ["god"]}),
    AdminCase("services", "read_scopes", {"read_scopes": "root"}),
    AdminCase("services", "write_scopes", {"write_scopes": "root"}),
    AdminCase("services", "description", {"description": ONE_MEGABYTE}),
    AdminCase("services", "slug", {"slug": "SALES"}),
    AdminCase("targets", "weight", {"weight": str(10**6)}),
    AdminCase("rate-policies", "plan", {"plan": "platinum"}),
    AdminCase("rate-policies", "limit", {"limit": "0"}),
    AdminCase("rate-policies", "window_seconds", {"window_seconds": str(10**9)}),
    AdminCase("api-keys", "scopes", {"scopes": "root"}),
    AdminCase("api-keys", "expires_at", {"expires_at_0": "2000-01-01", "expires_at_1": "00:00:00"}),
    AdminCase("tenants", "slug", {"slug": "Bakery-Madrid"}),
]


@pytest.mark.parametrize("case", ADMIN_CASES, ids=str)
def test_the_admin_change_form_refuses_the_same_bad_values(admin_client, world, case):
    obj = world[case.resource]
    before = row(obj)
    url = admin_url(type(obj), "change", obj.pk)

    response = admin_client.post(url, {**admin_form(admin_client, url, type(obj)), **case.posted})

    assert_form_error_on(response, case.field_name)
    assert row(obj) == before
    assert_snapshot_compiles()


def test_the_admin_add_form_refuses_an_unconfirmed_shadowing_prefix_and_accepts_a_confirmed_one(
    admin_client, world
):
    url = admin_url(Service, "add")
    form = {
        **admin_form(admin_client, url, Service),
        **service_body(path_prefix="/api/v1/sales/x"),
        "allowed_methods": ["GET", "POST"],  # the add form shows none ticked
    }

    refused = admin_client.post(url, form)
    confirmed = admin_client.post(url, {**form, "shadows": "sales"})

    assert_form_error_on(refused, "path_prefix")
    assert "&#x27;sales&#x27; (/api/v1/sales)" in refused.content.decode()
    assert confirmed.status_code == 302
    assert Service.objects.get(slug="sales-x").shadows == ["sales"]


def test_a_good_admin_save_after_a_refused_one_reaches_the_snapshot(admin_client, world):
    subscription = world["subscriptions"]
    url = admin_url(Subscription, "change", subscription.pk)
    form = admin_form(admin_client, url, Subscription)

    refused = admin_client.post(url, {**form, "grace_days": "2932896"})
    accepted = admin_client.post(url, {**form, "grace_days": "14"})

    assert_form_error_on(refused, "grace_days")
    assert accepted.status_code == 302
    subscription.refresh_from_db()  # the form keeps whole seconds of the period end
    expected = (subscription.current_period_end + timedelta(days=14)).timestamp()
    assert compile_snapshot().tenants["acme"].grace_ends_at == expected


# --- The model itself: the rule a config-file loader will reuse --------------------------------

SERVICE_BOUNDS = [
    ("connect_timeout", CONNECT_TIMEOUT_RANGE),
    ("read_timeout", READ_TIMEOUT_RANGE),
    ("retries", RETRIES_RANGE),
    ("breaker_failure_threshold", BREAKER_FAILURE_THRESHOLD_RANGE),
    ("breaker_failure_window", BREAKER_FAILURE_WINDOW_RANGE),
    ("breaker_minimum_throughput", BREAKER_MINIMUM_THROUGHPUT_RANGE),
    ("breaker_recovery_timeout", BREAKER_RECOVERY_TIMEOUT_RANGE),
    ("breaker_success_threshold", BREAKER_SUCCESS_THRESHOLD_RANGE),
    ("health_interval", HEALTH_INTERVAL_RANGE),
    ("max_body_bytes", MAX_BODY_BYTES_RANGE),
    ("cache_ttl", CACHE_TTL_RANGE),
]


@pytest.mark.parametrize(("field_name", "bounds"), SERVICE_BOUNDS, ids=[name for name, _ in SERVICE_BOUNDS])
def test_each_service_bound_is_inclusive_and_the_next_value_out_is_refused(db, field_name, bounds):
    low, high = bounds
    step = 1 if isinstance(high, int) else 0.01

    def errors_for(value) -> dict:
        service = Service(name="Bounds", slug="bounds", path_prefix="/api/v1/bounds", **{field_name: value})
        try:
            service.full_clean()
        except ValidationError as exc:
            return exc.message_dict
        return {}

    assert field_name not in errors_for(low) and field_name not in errors_for(high)
    assert field_name in errors_for(high + step)
    if low - step >= 0:
        assert field_name in errors_for(low - step)
    if isinstance(high, float):
        assert field_name in errors_for(float("nan"))


def test_the_demo_registry_passes_the_models_own_validation(db, monkeypatch):
    monkeypatch.setenv("DEMO_UPSTREAM_HOST", "127.0.0.1")
    call_command("load_demo", stdout=StringIO())

    for model in (Tenant, Subscription, Service, Target, RatePolicy, ApiKey):
        for obj in model.objects.all():
            obj.full_clean()
    assert_snapshot_compiles()
