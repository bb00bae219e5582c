"""Edge features of the data plane: response caching, API versioning, IP lists, header transforms."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from tests.live import wait_until
from tests.proxy.test_auth import claims, sign


def auth_for(tenant: str, **extra) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign(claims(tenant=tenant, **extra))}"}


# --- response caching -----------------------------------------------------------------------


@pytest.fixture
def cached(make_service, make_tenant, upstream, gateway):
    make_tenant("tenant-a")
    make_tenant("tenant-b")
    service = make_service("sales", targets=[upstream.url], auth_required=True, cache_ttl=60)
    gateway.sync()
    return service


def test_second_get_is_served_from_cache(cached, gateway, upstream):
    url = f"{gateway.url}/api/v1/sales/catalog?page=1"
    first = httpx.get(url, headers=auth_for("tenant-a"))
    second = httpx.get(url, headers=auth_for("tenant-a"))
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json() == first.json()
    assert int(second.headers["age"]) >= 0
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(upstream.hits("/catalog")) == 1


def test_one_tenants_cache_is_never_served_to_another(cached, gateway, upstream):
    url = f"{gateway.url}/api/v1/sales/catalog"
    httpx.get(url, headers=auth_for("tenant-a"))
    other = httpx.get(url, headers=auth_for("tenant-b"))
    assert other.headers["x-cache"] == "MISS"
    assert other.json()["headers"]["x-tenant-id"] == "tenant-b"
    assert len(upstream.hits("/catalog")) == 2


@pytest.mark.parametrize(
    "header", ["Cache-Control=no-store", "Cache-Control=private", "Set-Cookie=s%3D1", "Vary=*"]
)
def test_uncacheable_responses_are_not_cached(cached, gateway, upstream, header):
    url = f"{gateway.url}/api/v1/sales/set-headers?{header}"
    for _ in range(2):
        assert httpx.get(url, headers=auth_for("tenant-a")).headers["x-cache"] == "MISS"
    assert len(upstream.hits("/set-headers")) == 2


def test_vary_headers_split_the_cache(cached, gateway, upstream):
    url = f"{gateway.url}/api/v1/sales/set-headers?Vary=Accept-Language"
    english = {**auth_for("tenant-a"), "Accept-Language": "en"}
    spanish = {**auth_for("tenant-a"), "Accept-Language": "es"}
    assert httpx.get(url, headers=english).headers["x-cache"] == "MISS"
    assert httpx.get(url, headers=spanish).headers["x-cache"] == "MISS"
    assert httpx.get(url, headers=english).headers["x-cache"] == "HIT"
    assert len(upstream.hits("/set-headers")) == 2


def test_posts_are_never_cached(cached, gateway, upstream):
    for _ in range(2):
        httpx.post(f"{gateway.url}/api/v1/sales/catalog", headers=auth_for("tenant-a"))
    assert len(upstream.hits("/catalog")) == 2


def test_purge_reaches_the_instance_through_the_snapshot(cached, gateway, upstream):
    url = f"{gateway.url}/api/v1/sales/catalog"
    httpx.get(url, headers=auth_for("tenant-a"))
    assert httpx.get(url, headers=auth_for("tenant-a")).headers["x-cache"] == "HIT"
    cached.purge_cache()
    wait_until(
        lambda: httpx.get(url, headers=auth_for("tenant-a")).headers["x-cache"] == "MISS",
        1,
        interval=0.02,
        message="the purge to apply",
    )


@pytest.mark.redis
def test_a_purge_through_one_instances_api_empties_the_cache_of_every_instance(
    redis_url, make_service, make_tenant, upstream, transactional_db
):
    from tenancy.models import User
    from tenancy.tokens import tokens_for_user
    from tests.live import GatewayProcess

    make_tenant("tenant-a")
    service = make_service("sales", targets=[upstream.url], auth_required=True, cache_ttl=60)
    staff = User.objects.create_user("purger", password="pw-123456789", is_staff=True, role="admin")
    first, second = GatewayProcess().start(), GatewayProcess().start()
    try:
        # Given: a response cached in the shared (Redis) cache, served as a HIT by both (behind
        # one load balancer, so one Host: the cache is keyed by the full URL).
        client_headers = {**auth_for("tenant-a"), "Host": "api.gateway.example"}
        url = "/api/v1/sales/catalog"
        httpx.get(f"{first.url}{url}", headers=client_headers)
        assert [
            httpx.get(f"{g.url}{url}", headers=client_headers).headers["x-cache"] for g in (first, second)
        ] == [
            "HIT",
            "HIT",
        ]
        # When: staff purge the service through the first instance's management API.
        purge = httpx.post(
            f"{first.url}/api/manage/services/{service.pk}/purge-cache/",
            headers={"Authorization": f"Bearer {tokens_for_user(staff)['access']}"},
        )
        assert purge.status_code in (200, 202, 204), purge.text
        # Then: within 1 s the second instance misses too, and the upstream is asked again.
        hits_before = len(upstream.hits("/catalog"))
        wait_until(
            lambda: httpx.get(f"{second.url}{url}", headers=client_headers).headers["x-cache"] == "MISS",
            1,
            interval=0.02,
            message="the other instance to drop the purged entry",
        )
        assert len(upstream.hits("/catalog")) == hits_before + 1
    finally:
        first.stop()
        second.stop()


# --- versioning -------------------------------------------------------------------------------


@pytest.fixture
def versioned(make_service, upstream, second_upstream, gateway, transactional_db):
    from registry.models import ServiceVersion, Target

    service = make_service("sales", targets=[upstream.url])
    Target.objects.create(service=service, url=second_upstream.url, version="2")
    ServiceVersion.objects.create(service=service, version="2")
    ServiceVersion.objects.create(
        service=service,
        version="3",
        deprecated=True,
        deprecated_at=timezone.now() - timedelta(days=1),
        sunset_at=timezone.now() + timedelta(days=90),
    )
    Target.objects.create(service=service, url=second_upstream.url, version="3")
    gateway.sync()
    return service


def test_path_and_header_versions_reach_their_target_group(versioned, gateway, upstream, second_upstream):
    assert httpx.get(f"{gateway.url}/api/v2/sales/items").status_code == 200
    assert httpx.get(f"{gateway.url}/api/v1/sales/items", headers={"X-API-Version": "2"}).status_code == 200
    assert httpx.get(f"{gateway.url}/api/v1/sales/items", headers={"Accept-Version": "v2"}).status_code == 200
    assert [r.path for r in second_upstream.hits()] == ["/items", "/items", "/items"]
    assert httpx.get(f"{gateway.url}/api/v1/sales/items").status_code == 200
    assert [r.path for r in upstream.hits()] == ["/items"]  # no version: the default group


def test_unknown_version_is_404(versioned, gateway, upstream, second_upstream):
    response = httpx.get(f"{gateway.url}/api/v1/sales/items", headers={"X-API-Version": "9"})
    assert response.status_code == 404
    assert httpx.get(f"{gateway.url}/api/v9/sales/items").status_code == 404
    assert upstream.hits() == second_upstream.hits() == []


def test_deprecated_version_carries_deprecation_and_sunset(versioned, gateway):
    from email.utils import parsedate_to_datetime

    deprecated = httpx.get(f"{gateway.url}/api/v3/sales/items")
    assert deprecated.status_code == 200
    assert deprecated.headers["deprecation"].startswith("@")
    sunset = parsedate_to_datetime(deprecated.headers["sunset"])
    assert timedelta(days=89) < sunset - timezone.now() < timedelta(days=91)
    current = httpx.get(f"{gateway.url}/api/v2/sales/items")
    assert "deprecation" not in current.headers and "sunset" not in current.headers


# --- IP allow/deny lists -----------------------------------------------------------------------


def test_service_ip_lists(make_service, upstream, gateway, transactional_db):
    service = make_service("sales", targets=[upstream.url], ip_allow=["10.0.0.0/8"])
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/x")
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    service.ip_allow = ["127.0.0.0/8"]
    service.ip_deny = ["127.0.0.1/32"]
    service.save()
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 403  # deny wins
    service.ip_deny = []
    service.save()
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    assert len(upstream.hits()) == 1


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(make_service, upstream, gateway):
    make_service("sales", targets=[upstream.url], ip_allow=["203.0.113.0/24"])
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/x", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 403
    assert upstream.hits() == []


def test_tenant_ip_lists_apply_to_its_credentials(make_service, make_tenant, upstream, gateway):
    make_tenant("acme", ip_deny=["127.0.0.0/8"])
    make_tenant("other")
    make_service("sales", targets=[upstream.url], auth_required=True)
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x", headers=auth_for("acme")).status_code == 403
    assert httpx.get(f"{gateway.url}/api/v1/sales/x", headers=auth_for("other")).status_code == 200


# --- header transforms ----------------------------------------------------------------------------


def test_header_transforms_cannot_touch_identity_headers(make_service, make_tenant, upstream, gateway):
    make_tenant("acme")
    make_service(
        "sales",
        targets=[upstream.url],
        auth_required=True,
        header_transforms={
            "request": {
                "add": {"X-Source": "gateway", "X-Tenant-ID": "forged", "X-User-ID": "0"},
                "remove": ["X-Debug", "X-Request-ID"],
                "rename": {"X-Legacy-Id": "X-Client-Id", "X-Other": "X-User-Roles"},
            },
            "response": {
                "add": {"X-Served-By": "gateway"},
                "remove": ["X-Internal"],
                "rename": {"X-Upstream-Version": "X-Api-Build"},
            },
        },
    )
    gateway.sync()
    response = httpx.get(
        f"{gateway.url}/api/v1/sales/set-headers?X-Internal=secret&X-Upstream-Version=7",
        headers={**auth_for("acme"), "X-Debug": "1", "X-Legacy-Id": "abc", "X-Other": "admin"},
    )
    received = upstream.hits("/set-headers")[0].headers
    assert received["x-source"] == "gateway"
    assert "x-debug" not in received
    assert received["x-client-id"] == "abc" and "x-legacy-id" not in received
    assert received["x-tenant-id"] == "acme"
    assert received["x-user-id"] == "7"
    assert received["x-user-roles"] == "member"
    assert len(received["x-request-id"]) == 36
    assert response.headers["x-served-by"] == "gateway"
    assert "x-internal" not in response.headers
    assert response.headers["x-api-build"] == "7"
    assert response.headers["x-request-id"] == received["x-request-id"]
