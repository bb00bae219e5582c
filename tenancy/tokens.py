"""Token issuance on the control plane: simplejwt tokens carrying the gateway's claims.

simplejwt gives rotation and the refresh blacklist; this module makes its tokens carry a
`kid` header, a string `sub` (RFC 7519 section 4.1.2), and the `tenant`, `roles` and
`scopes` claims the data plane reads.
"""

from __future__ import annotations

import jwt
from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from gateway_project.core.roles import ROLE_SCOPES
from tenancy.keys import key_ring

__all__ = ["GatewayAccessToken", "GatewayRefreshToken", "decode_gateway_token", "tokens_for_user"]


class GatewayTokenBackend(TokenBackend):
    """Signs with the current key (and its `kid`); verifies against the key ring, pinned algorithm."""

    def __init__(self) -> None:
        ring = key_ring()
        super().__init__(
            ring.algorithm,
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY_SECONDS,
        )
        self.ring = ring

    def encode(self, payload: dict) -> str:
        claims = {**payload, "aud": self.audience, "iss": self.issuer}
        return jwt.encode(
            claims,
            self.ring.signing_key,
            algorithm=self.ring.algorithm,
            headers={"kid": self.ring.signing_kid},
        )

    def decode(self, token, verify: bool = True) -> dict:
        try:
            text = token.decode() if isinstance(token, bytes) else str(token)
            return decode_gateway_token(text, verify=verify)
        except jwt.InvalidTokenError as exc:
            raise TokenBackendError("Token is invalid or expired") from exc


def decode_gateway_token(token: str, verify: bool = True) -> dict:
    """Verify one of our own tokens: algorithm pinned, kid from our ring only, exp required."""
    ring = key_ring()
    if not verify:
        return jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token).get("kid")
    key = ring.verifying_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise jwt.InvalidTokenError("unknown kid")
    return jwt.decode(
        token,
        key,
        algorithms=[ring.algorithm],
        audience=settings.JWT_AUDIENCE,
        issuer=settings.JWT_ISSUER,
        leeway=settings.JWT_LEEWAY_SECONDS,
        options={"require": ["exp", "iat", "jti", "sub"]},
    )


_backend: GatewayTokenBackend | None = None


def _token_backend() -> GatewayTokenBackend:
    global _backend
    if _backend is None:
        _backend = GatewayTokenBackend()
    return _backend


class GatewayAccessToken(AccessToken):
    def get_token_backend(self):
        return _token_backend()


class GatewayRefreshToken(RefreshToken):
    access_token_class = GatewayAccessToken

    def get_token_backend(self):
        return _token_backend()

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        token["sub"] = str(user.pk)
        for claim, value in identity_claims(user).items():
            token[claim] = value
        return token


def identity_claims(user) -> dict:
    """The claims the data plane turns into X-User-ID, X-Tenant-ID, X-User-Roles, X-User-Scopes."""
    role = user.role
    return {
        "tenant": user.tenant.slug if user.tenant_id else None,
        "roles": [role],
        "scopes": list(ROLE_SCOPES.get(role, ())),
    }


def tokens_for_user(user) -> dict[str, str]:
    """simplejwt's response shape: {"access", "refresh"}."""
    refresh = GatewayRefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}
