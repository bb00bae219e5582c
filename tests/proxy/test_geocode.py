"""POST /api/v1/geocode against a fake Nominatim on loopback: cache, 1 req/s, identity, errors."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from rest_framework.test import APIClient

from gateway_project.ops.geocode import SLOT_MARGIN_SECONDS, reset_upstream_slots
from tests.control_plane import assert_problem
from tests.live import Received, RecordingUpstream, free_port

URL = "/api/v1/geocode"


@dataclass
class FakeNominatim(RecordingUpstream):
    """Answers /search with deterministic jsonv2 places, or misbehaves as a test asks."""

    status: int = 200
    delay: float = 0.0
    body: bytes | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)

    def params(self, index: int = -1) -> dict[str, str]:
        query = parse_qs(self.hits("/search")[index].query)
        return {name: values[0] for name, values in query.items()}

    async def _handle(self, request):
        from aiohttp import web

        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.requests.append(
                Received(
                    request.method,
                    request.path,
                    request.query_string,
                    headers,
                    list(headers.items()),
                    b"",
                    self.port,
                )
            )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.body is not None:
            return web.Response(body=self.body, status=self.status, content_type="text/html")
        if self.status != 200:
            headers = self.response_headers
            return web.json_response({"error": "nope"}, status=self.status, headers=headers)
        limit = int(request.query.get("limit", "10"))
        return web.json_response([_place(request.query["q"], n) for n in range(min(limit, 2))])


def _place(query: str, rank: int) -> dict:
    checksum = zlib.crc32(f"{query.lower()}:{rank}".encode())
    return {
        "place_id": checksum,
        "licence": "Data © OpenStreetMap contributors, ODbL 1.0.",
        "osm_type": "node",
        "osm_id": checksum,
        "lat": "40.4167047",
        "lon": "-3.7035825",
        "category": "place",
        "type": "city",
        "place_rank": 16,
        "importance": 0.8 - rank / 10,
        "addresstype": "city",
        "name": query,
        "display_name": f"{query}, Madrid, España",
        "address": {"city": query, "country": "España", "country_code": "es"},
        "boundingbox": ["40.31", "40.64", "-3.88", "-3.51"],
        "extratags": {"wikidata": "Q2807"},  # not asked for: the gateway drops it
    }


@pytest.fixture
def nominatim(settings):
    server = FakeNominatim().start()
    settings.NOMINATIM_URL = server.url
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_schedule():
    """No reservation or back-off leaks from one test into the next (Redis or in-process)."""
    reset_upstream_slots()
    yield
    reset_upstream_slots()


@pytest.fixture
def client(member_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=member_user)
    return client


def search(client: APIClient, **body):
    return client.post(URL, body, format="json")


# --- Searching and caching ---------------------------------------------------------------


def test_search_returns_places_with_the_useful_fields(client, nominatim):
    response = search(client, q="Madrid")

    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "Madrid"
    assert body["cached"] is False
    assert [place["place_id"] for place in body["results"]] == [
        _place("Madrid", 0)["place_id"],
        _place("Madrid", 1)["place_id"],
    ]
    first = body["results"][0]
    assert first["display_name"] == "Madrid, Madrid, España"
    assert (first["lat"], first["lon"], first["category"], first["type"]) == (
        "40.4167047",
        "-3.7035825",
        "place",
        "city",
    )
    assert first["address"]["country_code"] == "es"
    assert first["boundingbox"] == ["40.31", "40.64", "-3.88", "-3.51"]
    assert first["importance"] == 0.8
    assert "extratags" not in first


def test_plain_json_class_field_is_reported_as_category(client, nominatim):
    nominatim.body = b'[{"place_id": 7, "class": "boundary", "type": "administrative"}]'

    places = search(client, q="Aragón").json()["results"]

    assert places == [{"place_id": 7, "category": "boundary", "type": "administrative"}]


def test_upstream_gets_policy_params_and_an_identifying_user_agent(client, nominatim):
    search(client, q="  Porto   Ribeira ", limit=3, countrycodes="PT, es")

    assert nominatim.params() == {
        "q": "Porto Ribeira",
        "format": "jsonv2",
        "limit": "3",
        "addressdetails": "1",
        "countrycodes": "es,pt",
    }
    received = nominatim.hits("/search")[0]
    assert received.method == "GET"
    assert (
        received.headers["user-agent"] == "django-api-gateway/0.1.0 (+https://github.com/django-api-gateway)"
    )
    assert "referer" not in received.headers


def test_user_agent_comes_from_settings_when_set(client, nominatim, settings):
    settings.GEOCODE_USER_AGENT = "acme-maps/2.0 (ops@acme.example)"

    search(client, q="Lisboa")

    assert nominatim.hits("/search")[0].headers["user-agent"] == "acme-maps/2.0 (ops@acme.example)"


def test_repeated_search_is_served_from_cache_whatever_the_case_and_spacing(client, nominatim):
    first = search(client, q="Madrid")

    again = [search(client, q=q) for q in ("Madrid", "  MADRID ", "mAdRiD")]

    assert len(nominatim.hits("/search")) == 1
    assert [r.json()["cached"] for r in again] == [True, True, True]
    assert all(r.json()["results"] == first.json()["results"] for r in again)
    assert again[1].json()["query"] == "MADRID"


def test_limit_and_countries_are_part_of_the_cache_key(client, nominatim):
    search(client, q="Valencia", countrycodes="es,ve")

    assert search(client, q="valencia", countrycodes="VE,es").json()["cached"] is True
    assert search(client, q="valencia", countrycodes="es").json()["cached"] is False
    assert search(client, q="valencia", countrycodes="es,ve", limit=1).json()["cached"] is False
    assert len(nominatim.hits("/search")) == 3


def test_empty_result_is_cached_too(client, nominatim):
    nominatim.body = b"[]"

    response = search(client, q="Nowhere at all")

    assert response.json() == {"query": "Nowhere at all", "results": [], "cached": False}
    assert search(client, q="nowhere at all").json()["cached"] is True
    assert len(nominatim.hits("/search")) == 1


# --- Nominatim's 1 request per second -----------------------------------------------------


def test_concurrent_searches_reach_upstream_at_most_once_per_second(member_user, nominatim, settings):
    interval = settings.GEOCODE_MIN_INTERVAL
    responses = {}

    def call(query: str) -> None:
        client = APIClient()
        client.force_authenticate(user=member_user)
        responses[query] = search(client, q=query)

    threads = [threading.Thread(target=call, args=(q,)) for q in ("Bilbao", "Sevilla", "Girona")]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started

    assert [r.status_code for r in responses.values()] == [200, 200, 200]
    assert elapsed >= 2 * interval
    arrivals = sorted(nominatim.arrivals)
    assert len(arrivals) == 3
    assert all(b - a >= interval for a, b in zip(arrivals, arrivals[1:], strict=False))


def test_a_wait_beyond_the_bound_is_refused_with_retry_after(client, nominatim, settings):
    settings.GEOCODE_MAX_WAIT_SECONDS = 0
    assert search(client, q="Toledo").status_code == 200

    response = search(client, q="Cuenca")

    assert_problem(response, 503, "SERVICE_UNAVAILABLE", instance=URL)
    assert response["Retry-After"] == str(math.ceil(settings.GEOCODE_MIN_INTERVAL + SLOT_MARGIN_SECONDS))
    assert len(nominatim.hits("/search")) == 1


@pytest.mark.redis
def test_the_schedule_is_shared_through_redis(client, nominatim, settings, redis_client):
    """Another instance's reservation in Redis holds this one back (nothing is kept locally)."""
    settings.GEOCODE_MAX_WAIT_SECONDS = 0
    key = f"{settings.CACHE_KEY_PREFIX}:geocode:slot"
    assert search(client, q="Soria").status_code == 200
    assert 0 < redis_client.pttl(key) <= 1000 * (settings.GEOCODE_MIN_INTERVAL + SLOT_MARGIN_SECONDS)

    seconds, micros = redis_client.time()
    next_free_ms = seconds * 1000 + micros // 1000 + 1500
    redis_client.set(key, next_free_ms, px=1500)
    response = search(client, q="Teruel")

    assert_problem(response, 503, "SERVICE_UNAVAILABLE", instance=URL)
    assert response["Retry-After"] == "2"
    assert len(nominatim.hits("/search")) == 1


# --- Upstream failures --------------------------------------------------------------------


def test_upstream_server_error_is_a_bad_gateway_and_not_cached(client, nominatim):
    nominatim.status = 500

    assert_problem(search(client, q="Cádiz"), 502, "BAD_GATEWAY", instance=URL)

    nominatim.status = 200
    response = search(client, q="Cádiz")
    assert response.status_code == 200
    assert response.json()["cached"] is False
    assert len(nominatim.hits("/search")) == 2


def test_slow_upstream_is_an_upstream_timeout(client, nominatim, settings):
    settings.GEOCODE_TIMEOUT_SECONDS = 0.2
    nominatim.delay = 0.6

    started = time.monotonic()
    response = search(client, q="Zaragoza")

    assert_problem(response, 504, "UPSTREAM_TIMEOUT", instance=URL)
    assert time.monotonic() - started < 0.6


def test_unreachable_upstream_is_a_bad_gateway(client, settings):
    settings.NOMINATIM_URL = f"http://127.0.0.1:{free_port()}"

    assert_problem(search(client, q="Murcia"), 502, "BAD_GATEWAY", instance=URL)


def test_upstream_body_that_is_not_a_place_list_is_a_bad_gateway(client, nominatim):
    nominatim.body = b"<html>maintenance</html>"

    assert_problem(search(client, q="Huesca"), 502, "BAD_GATEWAY", instance=URL)


def test_upstream_429_backs_off_the_whole_gateway(client, nominatim):
    nominatim.status = 429
    nominatim.response_headers = {"Retry-After": "30"}

    first = search(client, q="Granada")
    nominatim.status = 200
    second = search(client, q="Almería")

    assert_problem(first, 503, "SERVICE_UNAVAILABLE", instance=URL)
    assert first["Retry-After"] == "30"
    assert_problem(second, 503, "SERVICE_UNAVAILABLE", instance=URL)
    assert 29 <= int(second["Retry-After"]) <= 30
    assert len(nominatim.hits("/search")) == 1


# --- Validation and authentication --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 301}, "q"),
        ({"q": {"city": "Madrid"}}, "q"),
        ({"q": "Madrid", "limit": 0}, "limit"),
        ({"q": "Madrid", "limit": 11}, "limit"),
        ({"q": "Madrid", "limit": "many"}, "limit"),
        ({"q": "Madrid", "countrycodes": "spain"}, "countrycodes"),
        ({"q": "Madrid", "countrycodes": "es;pt"}, "countrycodes"),
    ],
)
def test_invalid_body_is_a_validation_error_naming_the_field(client, nominatim, body, field_name):
    response = client.post(URL, body, format="json")

    document = assert_problem(response, 400, "VALIDATION_ERROR", instance=URL)
    assert list(document["errors"]) == [field_name]
    assert nominatim.hits() == []


def test_longest_query_is_accepted(client, nominatim):
    assert search(client, q=" " + "x" * 300 + " ").status_code == 200


def test_anonymous_caller_is_refused(nominatim, db):
    response = APIClient().post(URL, {"q": "Madrid"}, format="json")

    assert_problem(response, 401, "AUTH_ERROR", instance=URL)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert nominatim.hits() == []


def test_bearer_token_is_accepted_through_the_gateway(member_user, nominatim, gateway):
    """Client tokens are verified at the door by the data plane's policy chain (SPEC 16)."""
    from tenancy.tokens import tokens_for_user

    headers = {"Authorization": f"Bearer {tokens_for_user(member_user)['access']}"}
    response = httpx.post(f"{gateway.url}{URL}", json={"q": "Oviedo"}, headers=headers, timeout=5)

    assert response.status_code == 200 and response.json()["query"] == "Oviedo"


def test_api_key_is_accepted_through_the_gateway(tenant, nominatim, gateway):
    from registry.models import ApiKey

    key = ApiKey(tenant=tenant, name="maps", role="member", scopes=["read"])
    secret = key.assign_new_secret()
    key.save()
    gateway.sync()

    accepted = httpx.post(
        f"{gateway.url}{URL}", json={"q": "Gijón"}, headers={"X-API-Key": secret}, timeout=5
    )
    forged = httpx.post(
        f"{gateway.url}{URL}", json={"q": "Gijón"}, headers={"X-API-Key": secret + "x"}, timeout=5
    )

    assert accepted.status_code == 200
    assert forged.status_code == 401 and forged.json()["code"] == "AUTH_ERROR"
    assert forged.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_client_token_outside_the_gateway_door_is_not_trusted(member_user, nominatim):
    """Django's own test client skips the door: a bearer token alone authenticates nothing."""
    from tenancy.tokens import tokens_for_user

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_for_user(member_user)['access']}")

    assert_problem(search(client, q="Oviedo"), 401, "AUTH_ERROR", instance=URL)
    assert nominatim.hits() == []


def test_session_is_accepted(member_client, nominatim):
    assert search(member_client, q="León").status_code == 200
