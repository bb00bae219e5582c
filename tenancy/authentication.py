"""DRF authentication with the gateway's own bearer tokens (for /api/v1/users/me and friends)."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication

from tenancy.revocation import is_revoked
from tenancy.tokens import GatewayAccessToken

__all__ = ["ApiKeyAuthentication", "ApiKeyPrincipal", "GatewayJWTAuthentication", "caller_scopes"]


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


class ApiKeyPrincipal:
    """The caller behind an X-API-Key on Django endpoints: a tenant and scopes, no user row."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False

    def __init__(self, api_key) -> None:
        self.api_key = api_key
        self.tenant = api_key.tenant
        self.tenant_id = api_key.tenant_id
        self.role = api_key.role
        self.pk = None

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    """X-API-Key on Django endpoints (POST /api/v1/alerts), checked against the stored hash."""

    def authenticate(self, request):
        secret = request.META.get("HTTP_X_API_KEY")
        if not secret:
            return None
        from registry.models import ApiKey, hash_api_key

        key = ApiKey.objects.select_related("tenant").filter(key_hash=hash_api_key(secret)).first()
        if key is None or not key.is_active:
            raise AuthenticationFailed("Authentication credentials were missing or invalid.")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="gateway"'


def caller_scopes(request) -> frozenset[str]:
    """Scopes of whoever called: an API key's own, a token's `scopes` claim, or the user's role's."""
    from registry.constants import ROLE_SCOPES

    auth = request.auth
    if isinstance(request.user, ApiKeyPrincipal):
        return frozenset(request.user.api_key.scopes)
    if auth is not None and hasattr(auth, "get"):
        return frozenset(auth.get("scopes") or ())
    return frozenset(ROLE_SCOPES.get(getattr(request.user, "role", ""), ()))
