"""Authentication and authorization in the data plane (SPEC section 4 steps 5 and 7, section 6).

Bearer JWTs are verified with the algorithm pinned, keys resolved only from our own key
ring by `kid` (never from `jwk`/`jku` headers), `exp` required, `iss`/`aud` checked and
10 s of leeway; verified tokens are cached until they expire. API keys are looked up by
their SHA-256 hash and compared in constant time. Every failure gets the same 401 body.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

__all__ = [
    "AUTH_FAILED",
    "Identity",
    "TokenVerifier",
    "api_key_usable",
    "identity_from_api_key",
    "role_satisfies",
]

AUTH_FAILED = "Authentication credentials were missing or invalid."
_TOKEN_CACHE_LIMIT = 50_000
_ROLE_RANK = {"viewer": 0, "member": 1, "staff": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class Identity:
    kind: str  # "jwt" (ours or an external issuer's), "introspection" or "api_key"
    subject: str
    tenant: str | None
    roles: frozenset[str]
    scopes: frozenset[str]
    jti: str
    expires_at: float
    demo_session: str = ""
    api_key_id: int | None = None
    api_key_hash: str = ""  # open connections look the key up again when the registry changes

    @property
    def rate_key(self) -> str:
        return f"key:{self.api_key_id}" if self.kind == "api_key" else f"user:{self.subject}"


def role_satisfies(held: frozenset[str], required: frozenset[str]) -> bool:
    """Roles are ordered viewer < member < staff < admin; other roles must match exactly."""
    if held & required:
        return True
    best = max((_ROLE_RANK.get(role, -1) for role in held), default=-1)
    return any(best >= _ROLE_RANK[role] for role in required if role in _ROLE_RANK)


def _string_set(value) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


class TokenVerifier:
    """Verifies the gateway's own JWTs; a verified token is remembered until it expires."""

    def __init__(self, key_ring, issuer: str, audience: str, leeway: float, metrics=None) -> None:
        self._ring = key_ring
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._cache: dict[str, Identity] = {}
        self._metrics = metrics

    def use_key_ring(self, key_ring) -> None:
        """New verifying keys (a data plane following its control plane's rotation); tokens
        verified with a key that left the ring are verified again."""
        if set(key_ring.verifying_keys) != set(self._ring.verifying_keys):
            self._cache = {}
        self._ring = key_ring

    def verify(self, token: str) -> Identity | None:
        identity = self._cache.get(token)
        now = time.time()
        if identity is not None:
            if identity.expires_at + self._leeway > now:
                if self._metrics:
                    self._metrics.count_token_cache(hit=True)
                return identity
            del self._cache[token]
        if self._metrics:
            self._metrics.count_token_cache(hit=False)
        identity = self._decode(token)
        if identity is not None:
            if len(self._cache) >= _TOKEN_CACHE_LIMIT:
                self._evict(now)
            self._cache[token] = identity
        return identity

    def _decode(self, token: str) -> Identity | None:
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self._ring.verifying_keys.get(kid) if isinstance(kid, str) else None
            if key is None or header.get("alg") != self._ring.algorithm:
                return None
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._ring.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "jti"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        if claims.get("token_type", "access") != "access":
            return None  # a refresh token is not an access credential
        tenant = claims.get("tenant")
        return Identity(
            kind="jwt",
            subject=str(claims["sub"]),
            tenant=tenant if isinstance(tenant, str) and tenant else None,
            roles=_string_set(claims.get("roles")),
            scopes=_string_set(claims.get("scopes")),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            demo_session=str(claims.get("demo_session") or ""),
        )

    def _evict(self, now: float) -> None:
        live = {t: i for t, i in self._cache.items() if i.expires_at > now}
        if len(live) >= _TOKEN_CACHE_LIMIT:
            live = dict(list(live.items())[_TOKEN_CACHE_LIMIT // 2 :])
        self._cache = live


def api_key_usable(entry, now: float) -> bool:
    """Present in the snapshot, not revoked, not expired."""
    return entry is not None and not entry.revoked and (entry.expires_at is None or entry.expires_at > now)


def identity_from_api_key(snapshot, secret: bytes) -> Identity | None:
    digest = hashlib.sha256(secret).hexdigest()
    entry = snapshot.api_keys.get(digest)
    if entry is None or not hmac.compare_digest(entry.key_hash, digest):
        return None
    if not api_key_usable(entry, time.time()):
        return None
    return Identity(
        kind="api_key",
        subject=f"apikey:{entry.id}",
        tenant=entry.tenant,
        roles=frozenset((entry.role,)) if entry.role else frozenset(),
        scopes=entry.scopes,
        jti="",
        expires_at=entry.expires_at or float("inf"),
        api_key_id=entry.id,
        api_key_hash=digest,
    )
