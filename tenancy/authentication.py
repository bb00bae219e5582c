"""DRF authentication with the gateway's own bearer tokens (for /api/v1/users/me and friends)."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication

from tenancy.revocation import is_revoked
from tenancy.tokens import GatewayAccessToken

__all__ = [
    "IDENTITY_SCOPE_KEY",
    "ApiKeyAuthentication",
    "ApiKeyPrincipal",
    "GatewayIdentityAuthentication",
    "GatewayJWTAuthentication",
    "TokenPrincipal",
    "caller_scopes",
]

# Where the door (proxy.policy.EndpointDoor) leaves the identity it verified.
IDENTITY_SCOPE_KEY = "gateway.identity"


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


class TokenPrincipal:
    """A caller the door verified that has no user row here (a demo session, an external issuer)."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False
    pk = None

    def __init__(self, identity, tenant) -> None:
        self.identity = identity
        self.tenant = tenant
        self.tenant_id = tenant.pk if tenant is not None else None
        self.role = max(identity.roles, key=len, default="")

    def __str__(self) -> str:
        return self.identity.subject


class GatewayIdentityAuthentication(BaseAuthentication):
    """The identity the data plane's policy chain verified at the door (SPEC section 16).

    `proxy.policy.EndpointDoor` runs the one credential resolver and policy chain in
    front of Django endpoints that take a client token and hands the verified identity
    over in the ASGI scope; this class only turns it into a DRF principal.
    """

    def authenticate(self, request):
        scope = getattr(request._request, "scope", None) or {}
        identity = scope.get(IDENTITY_SCOPE_KEY)
        if identity is None:
            return None
        return _principal_for(identity), identity

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="gateway"'


def _principal_for(identity):
    from django.contrib.auth import get_user_model

    from registry.models import ApiKey
    from tenancy.models import Tenant

    if identity.api_key_id is not None:
        key = ApiKey.objects.select_related("tenant").filter(pk=identity.api_key_id).first()
        if key is None:
            raise AuthenticationFailed("Authentication credentials were missing or invalid.")
        return ApiKeyPrincipal(key)
    if identity.subject.isdigit():  # the gateway's own token for a user of this registry
        user = get_user_model().objects.select_related("tenant").filter(pk=identity.subject).first()
        if user is None or not user.is_active:
            raise AuthenticationFailed("Authentication credentials were missing or invalid.")
        return user
    tenant = Tenant.objects.filter(slug=identity.tenant).first() if identity.tenant else None
    return TokenPrincipal(identity, tenant)


def caller_scopes(request) -> frozenset[str]:
    """Scopes of whoever called: an API key's own, a token's `scopes` claim, or the user's role's."""
    from gateway_project.core.roles import ROLE_SCOPES

    auth = request.auth
    if isinstance(request.user, ApiKeyPrincipal):
        return frozenset(request.user.api_key.scopes)
    if hasattr(auth, "scopes"):  # an identity verified at the door
        return frozenset(auth.scopes)
    if auth is not None and hasattr(auth, "get"):
        return frozenset(auth.get("scopes") or ())
    return frozenset(ROLE_SCOPES.get(getattr(request.user, "role", ""), ()))
