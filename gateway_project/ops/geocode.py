"""Geocoding (SPEC section 11): `POST /api/v1/geocode` in front of a Nominatim-compatible search.

The public Nominatim's usage policy (https://operations.osmfoundation.org/policies/nominatim/)
asks for at most one request per second per application, a `User-Agent` that identifies the
application, and caching of results. So answers are cached for 24 h keyed by the normalized
search, and upstream calls take turns on one schedule shared by the whole cluster (a Redis
key when Redis is configured, else a process-wide clock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import httpx
from django.conf import settings
from django.core.cache import cache
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.core.broadcast import prefixed, sync_redis
from gateway_project.core.outbound import outbound_client
from gateway_project.web.problems import problem_response
from tenancy.authentication import GatewayIdentityAuthentication

__all__ = [
    "GeocodeProblem",
    "GeocodeRequestSerializer",
    "GeocodeSearch",
    "GeocodeView",
    "geocode",
    "reset_upstream_slots",
]

logger = logging.getLogger("gateway.geocode")

PROJECT_URL = "https://github.com/django-api-gateway"
UPSTREAM_TIMEOUT_SECONDS = 5.0
MAX_SLOT_WAIT_SECONDS = 10.0  # longer than this in the queue -> 503 with Retry-After
# Turns are spaced when we send; a request slowed by a fresh connection must still reach
# Nominatim a full interval after the one before it.
SLOT_MARGIN_SECONDS = 0.1
DEFAULT_BACKOFF_SECONDS = 60  # after a 429 without a usable Retry-After
MAX_BACKOFF_SECONDS = 3600
MAX_QUERY_LENGTH = 300
DEFAULT_LIMIT = 5
MAX_LIMIT = 10
MAX_COUNTRY_CODES = 20
SLOT_KEY = "geocode:slot"
CACHE_KEY_VERSION = "geocode:v1"
RESULT_FIELDS = (
    "place_id",
    "licence",
    "osm_type",
    "osm_id",
    "lat",
    "lon",
    "category",
    "type",
    "place_rank",
    "importance",
    "addresstype",
    "name",
    "display_name",
    "address",
    "boundingbox",
)
_COUNTRY_CODE = re.compile(r"[a-z]{2}")


# --- The request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeocodeSearch:
    """One validated search; searches equal but for case, spacing or country order share a key."""

    query: str  # trimmed, inner whitespace collapsed, case kept
    limit: int = DEFAULT_LIMIT
    countrycodes: str = ""  # "" or sorted lowercase ISO 3166-1 alpha-2 codes, comma-separated

    @property
    def cache_key(self) -> str:
        identity = json.dumps([self.query.lower(), self.limit, self.countrycodes])
        return f"{CACHE_KEY_VERSION}:{hashlib.sha256(identity.encode()).hexdigest()}"

    def upstream_params(self) -> dict[str, str | int]:
        params: dict[str, str | int] = {
            "q": self.query,
            "format": "jsonv2",
            "limit": self.limit,
            "addressdetails": 1,
        }
        if self.countrycodes:
            params["countrycodes"] = self.countrycodes
        return params


class GeocodeRequestSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=MAX_QUERY_LENGTH, trim_whitespace=True)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
    countrycodes = serializers.CharField(required=False, allow_blank=True, max_length=200)

    def validate_q(self, value: str) -> str:
        return " ".join(value.split())

    def validate_countrycodes(self, value: str) -> str:
        """Nominatim's `countrycodes`: ISO 3166-1 alpha-2 codes, comma-separated ("es,pt")."""
        codes = sorted({code.strip().lower() for code in value.split(",") if code.strip()})
        if not all(_COUNTRY_CODE.fullmatch(code) for code in codes):
            raise serializers.ValidationError(
                'Give ISO 3166-1 alpha-2 country codes separated by commas, like "es,pt".'
            )
        if len(codes) > MAX_COUNTRY_CODES:
            raise serializers.ValidationError(f"At most {MAX_COUNTRY_CODES} country codes.")
        return ",".join(codes)

    def search(self) -> GeocodeSearch:
        data = self.validated_data
        return GeocodeSearch(data["q"], data["limit"], data.get("countrycodes", ""))


class GeocodeProblem(Exception):
    """A failure the caller sees as a problem document, with `Retry-After` when it helps."""

    def __init__(self, code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    def response(self, request):
        response = problem_response(request, self.code, self.detail)
        if self.retry_after is not None:
            response["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return response


# --- The cluster-wide schedule (1 request per second) --------------------------------------


class LocalSlots:
    """Upstream turns for one process: each caller reserves the next free instant and sleeps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_free = 0.0

    def reserve(self, interval: float, max_wait: float) -> tuple[bool, float]:
        """(granted, seconds to wait): refused, nothing is reserved, when the wait is too long."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            if start - now > max_wait:
                return False, start - now
            self._next_free = start + interval
            return True, start - now

    def back_off(self, seconds: float) -> None:
        with self._lock:
            self._next_free = max(self._next_free, time.monotonic() + seconds)

    def reset(self) -> None:
        with self._lock:
            self._next_free = 0.0


# The key holds the instant (ms, Redis's clock, so every instance agrees) when the next
# upstream call may start, and expires then; reserving and refusing are one atomic step.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or 0))
local wait = start - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local next_free = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], next_free, 'PX', next_free - now)
return {1, wait}
"""
_BACK_OFF_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('GET', KEYS[1]) or 0) then
  redis.call('SET', KEYS[1], until_ms, 'PX', ARGV[1])
end
return until_ms
"""


class RedisSlots:
    """Upstream turns shared by every gateway instance through one Redis key."""

    def reserve(self, interval: float, max_wait: float) -> tuple[bool, float]:
        granted, wait_ms = _script(_RESERVE_LUA)(
            keys=[prefixed(SLOT_KEY)], args=[_ms(interval), _ms(max_wait)]
        )
        return bool(granted), int(wait_ms) / 1000

    def back_off(self, seconds: float) -> None:
        _script(_BACK_OFF_LUA)(keys=[prefixed(SLOT_KEY)], args=[_ms(seconds)])

    def reset(self) -> None:
        sync_redis().delete(prefixed(SLOT_KEY))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _script(source: str):
    return _registered_script(sync_redis(), source)


@lru_cache(maxsize=8)
def _registered_script(client, source: str):
    return client.register_script(source)


_local_slots = LocalSlots()
_redis_slots = RedisSlots()


def _slots() -> LocalSlots | RedisSlots:
    return _redis_slots if settings.REDIS_URL else _local_slots


def _reserve(interval: float, max_wait: float) -> tuple[bool, float]:
    """Reserve on the cluster's schedule; if Redis is down, at least this process stays polite."""
    try:
        return _slots().reserve(interval, max_wait)
    except Exception as exc:  # redis.RedisError and friends: degrade, never a 500
        logger.warning("geocode slot in Redis unavailable, throttling per process: %s", exc)
        return _local_slots.reserve(interval, max_wait)


def wait_for_upstream_slot() -> None:
    """Block until this request's turn to call Nominatim (policy: at most 1 request/second)."""
    interval = float(settings.GEOCODE_MIN_INTERVAL)
    if interval <= 0:
        return
    max_wait = float(getattr(settings, "GEOCODE_MAX_WAIT_SECONDS", MAX_SLOT_WAIT_SECONDS))
    granted, wait = _reserve(interval + SLOT_MARGIN_SECONDS, max_wait)
    if not granted:
        raise GeocodeProblem("SERVICE_UNAVAILABLE", "The geocoder is busy; retry later.", retry_after=wait)
    if wait > 0:
        time.sleep(wait)


def back_off_upstream(seconds: float) -> None:
    """Nominatim said 429: no instance calls it again before `seconds` have passed."""
    for slots in {_slots(), _local_slots}:
        try:
            slots.back_off(seconds)
        except Exception as exc:
            logger.warning("could not record geocode back-off: %s", exc)


def reset_upstream_slots() -> None:
    """Forget reservations and back-off (tests; an operator once a ban is lifted)."""
    _local_slots.reset()
    if settings.REDIS_URL:
        _redis_slots.reset()


# --- The upstream call ---------------------------------------------------------------------


# One pooled client per process, built at import: building it (TLS context) inside a turn
# would delay that request's arrival behind the next one's. NOMINATIM_URL is env-set, not
# saved, so the outbound guard judges it when dialling (scheme, resolved address).
_http_client = outbound_client()


def user_agent() -> str:
    """Nominatim bans anonymous or faked agents: name the application and where to reach it."""
    default = f"django-api-gateway/{settings.GATEWAY_VERSION} (+{PROJECT_URL})"
    return getattr(settings, "GEOCODE_USER_AGENT", "") or default


def _upstream_timeout() -> float:
    return float(getattr(settings, "GEOCODE_TIMEOUT_SECONDS", UPSTREAM_TIMEOUT_SECONDS))


def _retry_after_seconds(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "")
    seconds = int(value) if value.isdigit() else DEFAULT_BACKOFF_SECONDS
    return float(min(max(seconds, 1), MAX_BACKOFF_SECONDS))


def _call_upstream(search: GeocodeSearch) -> httpx.Response:
    try:
        return _http_client.get(
            f"{settings.NOMINATIM_URL.rstrip('/')}/search",
            params=search.upstream_params(),
            headers={"User-Agent": user_agent(), "Accept": "application/json"},
            timeout=_upstream_timeout(),
        )
    except httpx.TimeoutException as exc:
        logger.warning("geocoder timed out: %s", exc)
        raise GeocodeProblem("UPSTREAM_TIMEOUT", "The geocoder did not answer in time.") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a misconfigured URL
        logger.warning("geocoder unreachable: %s", exc)
        raise GeocodeProblem("BAD_GATEWAY", "The geocoder could not be reached.") from exc


def _check_status(response: httpx.Response) -> None:
    if response.status_code == 429:
        retry_after = _retry_after_seconds(response)
        back_off_upstream(retry_after)
        raise GeocodeProblem(
            "SERVICE_UNAVAILABLE", "The geocoder asked us to slow down.", retry_after=retry_after
        )
    if response.status_code != 200:
        logger.warning("geocoder answered %s", response.status_code)
        raise GeocodeProblem("BAD_GATEWAY", f"The geocoder answered {response.status_code}.")


def _places(response: httpx.Response) -> list[dict]:
    """The useful fields of each place (jsonv2 names; `class` from plain json is `category`)."""
    try:
        payload = response.json()
    except ValueError as exc:
        raise GeocodeProblem("BAD_GATEWAY", "The geocoder answered something not JSON.") from exc
    if not isinstance(payload, list) or not all(isinstance(item, dict) for item in payload):
        raise GeocodeProblem("BAD_GATEWAY", "The geocoder answered something not a place list.")
    return [_place(item) for item in payload]


def _place(item: dict) -> dict:
    if "category" not in item and "class" in item:
        item = {**item, "category": item["class"]}
    return {name: item[name] for name in RESULT_FIELDS if name in item}


def fetch_places(search: GeocodeSearch) -> list[dict]:
    """One upstream search; the caller holds a slot on the schedule."""
    response = _call_upstream(search)
    _check_status(response)
    return _places(response)


def geocode(search: GeocodeSearch) -> tuple[list[dict], bool]:
    """(places, served from cache): a cached answer never calls the upstream (policy: cache)."""
    cached = cache.get(search.cache_key)
    if cached is not None:
        return cached, True
    wait_for_upstream_slot()
    # An identical search queued ahead of us may have filled the cache while we waited.
    cached = cache.get(search.cache_key)
    if cached is not None:
        return cached, True
    places = fetch_places(search)
    cache.set(search.cache_key, places, settings.GEOCODE_CACHE_SECONDS)
    return places, False


# --- The endpoint --------------------------------------------------------------------------


class GeocodeView(APIView):
    """Place search for any authenticated caller: bearer token, API key or session."""

    # Client tokens are verified by the one policy chain at the door (proxy.policy.EndpointDoor).
    authentication_classes = [GatewayIdentityAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    @extend_schema(
        request=GeocodeRequestSerializer,
        responses={
            200: inline_serializer(
                "GeocodeResponse",
                {
                    "query": serializers.CharField(),
                    "results": serializers.ListField(child=serializers.DictField()),
                    "cached": serializers.BooleanField(),
                },
            )
        },
        tags=["geocoding"],
    )
    def post(self, request):
        serializer = GeocodeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        search = serializer.search()
        try:
            places, cached = geocode(search)
        except GeocodeProblem as problem:
            return problem.response(request)
        return Response({"query": search.query, "results": places, "cached": cached})
