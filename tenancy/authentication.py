"""DRF authentication with the gateway's own bearer tokens (for /api/v1/users/me and friends)."""

from __future__ import annotations

from rest_framework_simplejwt.authentication import JWTAuthentication

from tenancy.revocation import is_revoked
from tenancy.tokens import GatewayAccessToken

__all__ = ["GatewayJWTAuthentication"]


class GatewayJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, with our token class and the cluster-wide revocation list."""

    www_authenticate_realm = "gateway"

    def get_validated_token(self, raw_token):
        from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

        try:
            token = GatewayAccessToken(raw_token)
        except TokenError as exc:
            raise InvalidToken("Token is invalid or expired") from exc
        if is_revoked(token.get("jti", "")):
            raise InvalidToken("Token is invalid or expired")
        return token

    def get_user(self, validated_token):
        if str(validated_token.get("sub", "")).startswith("demo:"):
            from rest_framework_simplejwt.exceptions import InvalidToken

            raise InvalidToken("Demo sessions have no user account")
        return super().get_user(validated_token)
