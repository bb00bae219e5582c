"""Tokens from external identity providers: OAuth 2.0 / OIDC issuers (SPEC section 15).

A JWT whose `iss` is a configured issuer is verified against that issuer's JWKS: the
algorithm pinned to the provider's asymmetric algorithms, the key chosen by `kid` from the
fetched set only (never from `jwk`/`jku` headers), `exp` required, `iss` exact, `aud` when
configured, 10 s of leeway. Key sets are cached per (provider, JWKS URL); an unknown `kid`
refetches at most once per `JWKS_REFETCH_INTERVAL`, and concurrent requests share one fetch.
Opaque tokens go to the RFC 7662 introspection endpoint of the first introspecting provider
(lowest id). Claims map to tenant, roles and scopes per provider. Every failure is None, so
the caller answers its one uniform 401; tokens are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from django.conf import settings

from gateway_project.core.outbound import async_outbound_client
from proxy.auth import Identity
from proxy.snapshot import IdentityProviderEntry
from tenancy.constants import ASYMMETRIC_ALGORITHMS

__all__ = [
    "ExpiringCache",
    "ExternalTokenVerifier",
    "JWKS_REFETCH_INTERVAL",
    "unverified_issuer",
]

logger = logging.getLogger("gateway.idp")

LEEWAY_SECONDS = 10.0
JWKS_REFETCH_INTERVAL = 30.0  # per provider: an unknown kid refetches at most this often
JWKS_FAILURE_RETRY = 5.0  # an unreachable JWKS is retried sooner, still never per request
JWKS_MAX_AGE = 3600.0  # a key set this old is refreshed, so retired keys drop out
INTROSPECTION_NEGATIVE_TTL = 10.0  # "active": false is remembered this long
INTROSPECTION_TTL_WITHOUT_EXP = 60.0  # an active answer without `exp` is trusted this long
IDENTITY_CACHE_LIMIT = 50_000
HTTP_TIMEOUT = httpx.Timeout(3.0, connect=2.0)
MAX_RESPONSE_BYTES = 512 * 1024

_KEY_TYPE_BY_ALGORITHM = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_FETCH_ERRORS = (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError)
_ROLE_SEPARATORS = re.compile(r"[\s,]+")


def unverified_issuer(token: str) -> str | None:
    """The `iss` of a JWS compact token, read without verification (routing only)."""
    _, dot, rest = token.partition(".")
    payload, dot2, signature = rest.partition(".")
    if not (dot and dot2) or "." in signature:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:  # binascii.Error, JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


class ExpiringCache:
    """A dict whose entries lapse at their own deadline (epoch seconds), bounded in size."""

    def __init__(self, limit: int = IDENTITY_CACHE_LIMIT) -> None:
        self._limit = limit
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now: float) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] > now:
            return entry[1]
        del self._entries[key]
        return None

    def put(self, key: Hashable, value: Any, expires_at: float, now: float) -> None:
        if len(self._entries) >= self._limit and key not in self._entries:
            self._evict(now)
        self._entries[key] = (expires_at, value)

    def _evict(self, now: float) -> None:
        live = {k: entry for k, entry in self._entries.items() if entry[0] > now}
        if len(live) >= self._limit:  # all still valid: keep the newest half
            live = dict(list(live.items())[len(live) - self._limit // 2 :])
        self._entries = live


class _SingleFlight:
    """Concurrent callers asking for the same key share one running task."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Future] = {}

    async def run(self, key: Hashable, start: Callable[[], Awaitable[Any]]) -> Any:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # shield: one caller giving up (client gone) must not cancel the others' fetch
        return await asyncio.shield(task)

    def is_running(self, key: Hashable) -> bool:
        return key in self._tasks

    def _forget(self, key: Hashable, task: asyncio.Future) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Key:
    key_type: str
    algorithm: str | None  # the JWK's own `alg`, when it names one
    key: Any

    def fits(self, algorithm: str) -> bool:
        family = _KEY_TYPE_BY_ALGORITHM.get(algorithm[:2])
        return family == self.key_type and self.algorithm in (None, algorithm)


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: dict[str | None, _Key]
    stale_at: float  # monotonic: refresh after this even when every kid is known
    next_fetch_at: float  # monotonic: no fetch before this (unknown kids, failures)

    def find(self, kid: str | None) -> _Key | None:
        if kid is None and len(self.keys) == 1:  # a token without kid, a set of one key
            return next(iter(self.keys.values()))
        return self.keys.get(kid)


def _parse_jwks(document: object) -> dict[str | None, _Key]:
    """Signing keys of a JWK set (RFC 7517); symmetric and unusable keys are left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str | None, _Key] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("kty") not in _KEY_TYPE_BY_ALGORITHM.values():
            continue
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        algorithm = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
        keys[kid] = _Key(jwk["kty"], algorithm, key)
    return keys


# --- Claims mapping -------------------------------------------------------------------------


def _claim(claims: dict, path: str) -> object:
    """A claim by name, or by dotted path into nested objects (`realm_access.roles`)."""
    if not path:
        return None
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _names(value: object, separators: re.Pattern | None = None) -> list[str]:
    if isinstance(value, str):
        return [n for n in (separators.split(value) if separators else value.split()) if n]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []


def _tenant(provider: IdentityProviderEntry, claims: dict, tenants: dict) -> str | None:
    value = _claim(claims, provider.tenant_claim)
    if isinstance(value, str) and value in tenants:
        return value
    return provider.default_tenant


def _roles(provider: IdentityProviderEntry, claims: dict) -> frozenset[str]:
    """External roles through the provider's mapping; unmapped ones are dropped."""
    mapping = provider.role_mapping
    external = _names(_claim(claims, provider.roles_claim), _ROLE_SEPARATORS)
    return frozenset(mapping[r] for r in external if isinstance(mapping.get(r), str))


def _external_id(provider: IdentityProviderEntry, value: str) -> str:
    """Namespaced per provider, so it cannot collide with local user ids or other issuers."""
    return f"idp{provider.id}:{value}"


def _expiry(claims: dict) -> float | None:
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def _map_identity(
    provider: IdentityProviderEntry, claims: dict, tenants: dict, kind: str, expires_at: float
) -> Identity | None:
    """The gateway identity for verified claims; None without a usable subject."""
    subject = claims.get("sub")
    if kind == "introspection" and not subject:
        subject = claims.get("username")  # RFC 7662 section 2.2: sub and username are optional
    if not isinstance(subject, str | int) or isinstance(subject, bool) or subject == "":
        return None
    jti = claims.get("jti")
    return Identity(
        kind=kind,
        subject=_external_id(provider, str(subject)),
        tenant=_tenant(provider, claims, tenants),
        roles=_roles(provider, claims),
        scopes=frozenset(_names(_claim(claims, provider.scopes_claim))),
        jti=_external_id(provider, jti) if isinstance(jti, str) and jti else "",
        expires_at=expires_at,
    )


def _refused(provider: IdentityProviderEntry, reason: str) -> None:
    logger.debug("external token refused", extra={"issuer": provider.issuer, "reason": reason})


def _same_provider(snapshot, provider: IdentityProviderEntry) -> bool:
    """A cached result stands only while its provider is configured exactly as it was."""
    current = snapshot.identity_providers.get(provider.issuer)
    return current is provider or current == provider


# --- The verifier ---------------------------------------------------------------------------


class ExternalTokenVerifier:
    """Verifies bearer tokens issued by the snapshot's identity providers; one per Runtime."""

    def __init__(
        self,
        runtime,
        *,
        own_issuer: str | None = None,
        leeway: float = LEEWAY_SECONDS,
        refetch_interval: float = JWKS_REFETCH_INTERVAL,
    ) -> None:
        self._runtime = runtime
        self._own_issuer = settings.JWT_ISSUER if own_issuer is None else own_issuer
        self._leeway = leeway
        self._refetch_interval = refetch_interval
        self._verified = ExpiringCache()
        self._introspected = ExpiringCache()
        self._key_sets: dict[tuple[int, str], _KeySet] = {}
        self._flights = _SingleFlight()
        self._client: httpx.AsyncClient | None = None

    # --- what the caller asks ---------------------------------------------------------------

    def issuer_of(self, token: str) -> str | None:
        """The configured external issuer this JWT claims (unverified), else None."""
        providers = self._runtime.snapshot.identity_providers
        if not providers:
            return None
        issuer = unverified_issuer(token)
        if issuer is None or issuer == self._own_issuer or issuer not in providers:
            return None
        return issuer

    def should_introspect(self, token: str) -> bool:
        """An opaque token (no readable `iss`), and a provider that can introspect it."""
        return self._introspector() is not None and unverified_issuer(token) is None

    def verification_for(self, token: str) -> Awaitable[Identity | None] | None:
        """The awaitable that settles an external token, or None when the token is not one
        (the gateway's own, or an unknown issuer's): the caller then uses TokenVerifier."""
        providers = self._runtime.snapshot.identity_providers
        if not providers:
            return None
        issuer = unverified_issuer(token)
        if issuer is None:
            return self.introspect(token) if self._introspector() is not None else None
        if issuer != self._own_issuer and issuer in providers:
            return self.verify(token)
        return None

    async def verify(self, token: str) -> Identity | None:
        """A JWT from a configured issuer, checked against the issuer's JWKS."""
        snapshot = self._runtime.snapshot
        now = time.time()
        cached = self._verified.get(token, now)
        if cached is not None and _same_provider(snapshot, cached[0]):
            self._count_cache(hit=True)
            return cached[1]
        self._count_cache(hit=False)
        issuer = self.issuer_of(token)
        provider = snapshot.identity_providers.get(issuer) if issuer else None
        if provider is None:
            return None
        if not provider.jwks_url:
            if not provider.introspection_url:
                return None
            return await self._introspect_with(provider, token)  # RFC 7662 answers for JWTs too
        identity = await self._check_signature(provider, token)
        if identity is not None:
            self._verified.put(token, (provider, identity), identity.expires_at + self._leeway, now)
        return identity

    async def introspect(self, token: str) -> Identity | None:
        """An opaque token, asked of the first introspecting provider (lowest id)."""
        provider = self._introspector()
        return await self._introspect_with(provider, token) if provider is not None else None

    async def close(self) -> None:
        await self._flights.cancel_all()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # --- JWTs ---------------------------------------------------------------------------

    async def _check_signature(self, provider: IdentityProviderEntry, token: str) -> Identity | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        algorithm, kid = header.get("alg"), header.get("kid")
        allowed = ASYMMETRIC_ALGORITHMS.intersection(provider.algorithms)
        if algorithm not in allowed or not (kid is None or isinstance(kid, str)):
            return _refused(provider, "algorithm not allowed")
        key = await self._key_for(provider, kid)
        if key is None or not key.fits(algorithm):
            return _refused(provider, "no matching key")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[algorithm], issuer=provider.issuer,
                audience=provider.audience or None, leeway=self._leeway,
                options={"require": ["exp", "iss", "sub"], "verify_aud": bool(provider.audience)},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return _refused(provider, type(exc).__name__)
        return _map_identity(provider, claims, self._runtime.snapshot.tenants, "jwt", float(claims["exp"]))

    async def _key_for(self, provider: IdentityProviderEntry, kid: str | None) -> _Key | None:
        """The key for `kid`, refetching the JWKS when it is unknown, old, or never fetched."""
        slot = (provider.id, provider.jwks_url)
        key_set = self._key_sets.get(slot)
        now = time.monotonic()
        key = key_set.find(kid) if key_set is not None else None
        if key is not None and now < key_set.stale_at:
            return key
        if key_set is not None and now < key_set.next_fetch_at and not self._flights.is_running(slot):
            return key  # rate limited: a stale key still serves, an unknown kid fails
        previous = key_set
        key_set = await self._flights.run(slot, lambda: self._fetch_keys(provider, previous))
        return key_set.find(kid)

    async def _fetch_keys(self, provider: IdentityProviderEntry, previous: _KeySet | None) -> _KeySet:
        started = time.monotonic()
        try:
            keys = _parse_jwks(await self._get_json("GET", provider.jwks_url))
        except _FETCH_ERRORS as exc:
            logger.warning("JWKS fetch failed", extra={"issuer": provider.issuer, "reason": str(exc)})
            retry = min(self._refetch_interval, JWKS_FAILURE_RETRY)
            key_set = _KeySet(
                previous.keys if previous else {}, previous.stale_at if previous else started,
                started + retry,
            )  # fmt: skip
        else:
            logger.info("JWKS fetched", extra={"issuer": provider.issuer, "keys": len(keys)})
            key_set = _KeySet(keys, started + JWKS_MAX_AGE, started + self._refetch_interval)
        self._remember_key_set((provider.id, provider.jwks_url), key_set)
        return key_set

    def _remember_key_set(self, slot: tuple[int, str], key_set: _KeySet) -> None:
        if slot not in self._key_sets:  # a new provider or URL: forget sets no longer configured
            configured = {(p.id, p.jwks_url) for p in self._runtime.snapshot.identity_providers.values()}
            self._key_sets = {s: k for s, k in self._key_sets.items() if s in configured}
        self._key_sets[slot] = key_set

    # --- Introspection (RFC 7662) -------------------------------------------------------

    def _introspector(self) -> IdentityProviderEntry | None:
        providers = self._runtime.snapshot.identity_providers.values()
        return min((p for p in providers if p.introspection_url), key=lambda p: p.id, default=None)

    async def _introspect_with(self, provider: IdentityProviderEntry, token: str) -> Identity | None:
        cached = self._introspected.get(token, time.time())
        if cached is not None and _same_provider(self._runtime.snapshot, cached[0]):
            self._count_cache(hit=True)
            return cached[1]
        self._count_cache(hit=False)
        return await self._flights.run(
            ("introspect", provider.id, token), lambda: self._ask_introspection(provider, token)
        )

    async def _ask_introspection(self, provider: IdentityProviderEntry, token: str) -> Identity | None:
        try:
            answer = await self._get_json(
                "POST", provider.introspection_url, auth=_client_credentials(provider),
                data={"token": token, "token_type_hint": "access_token"},
            )  # fmt: skip
        except _FETCH_ERRORS as exc:  # no answer is not "inactive": nothing is cached
            logger.warning("introspection failed", extra={"issuer": provider.issuer, "reason": str(exc)})
            return None
        now = time.time()
        identity = self._introspection_identity(provider, answer, now)
        if identity is None:
            self._introspected.put(token, (provider, None), now + INTROSPECTION_NEGATIVE_TTL, now)
        else:
            self._introspected.put(token, (provider, identity), identity.expires_at + self._leeway, now)
        return identity

    def _introspection_identity(
        self, provider: IdentityProviderEntry, answer: object, now: float
    ) -> Identity | None:
        if not isinstance(answer, dict) or answer.get("active") is not True:
            return None
        expires_at = _expiry(answer)
        if "exp" in answer and (expires_at is None or expires_at + self._leeway <= now):
            return None
        audience = answer.get("aud")
        if provider.audience and audience is not None and provider.audience not in _names(audience):
            return None
        expires_at = expires_at if expires_at is not None else now + INTROSPECTION_TTL_WITHOUT_EXP
        return _map_identity(provider, answer, self._runtime.snapshot.tenants, "introspection", expires_at)

    # --- HTTP ---------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """One guarded client (SPEC 14: resolved addresses checked at connect), created on
        first use inside the running loop; closed by close()."""
        if self._client is None:
            self._client = async_outbound_client(timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
        return self._client

    async def _get_json(self, method: str, url: str, **kwargs) -> object:
        async with self._http().stream(method, url, **kwargs) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ValueError("response too large")
        return json.loads(body)

    def _count_cache(self, hit: bool) -> None:
        metrics = getattr(self._runtime, "metrics", None)
        if metrics is not None:
            metrics.count_token_cache(hit=hit)


def _client_credentials(provider: IdentityProviderEntry) -> httpx.BasicAuth:
    # RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic encoding.
    return httpx.BasicAuth(quote(provider.client_id, safe=""), quote(provider.client_secret, safe=""))
