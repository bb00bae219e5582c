"""Auth endpoints (SPEC section 6): register, login, refresh, logout, token, demo, users/me, JWKS."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.db.models import Q
from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone
from django_ratelimit.core import is_ratelimited
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError

from gateway_project.core.clientip import client_ip
from gateway_project.web.problems import problem_response
from tenancy.keys import key_ring
from tenancy.mfa.second_factor import MFA_METHODS, SecondFactor, check_second_factor
from tenancy.models import DemoSession, Tenant, User
from tenancy.registration import RegistrationError, confirm_registration, start_registration
from tenancy.revocation import revoke_jti
from tenancy.serializers import (
    GatewayTokenRefreshSerializer,
    LoginSerializer,
    RegisterConfirmSerializer,
    RegisterSerializer,
    UserSerializer,
)
from tenancy.tokens import (
    GatewayAccessToken,
    GatewayRefreshToken,
    decode_gateway_token,
    tokens_for_user,
)

__all__ = [
    "DemoSessionView",
    "LoginView",
    "LogoutView",
    "MeView",
    "OAuthTokenView",
    "RefreshView",
    "RegisterConfirmView",
    "RegisterView",
    "jwks_view",
]

_BAD_CREDENTIALS = "Authentication credentials were missing or invalid."
_MFA_CHALLENGE = "This account requires a one-time code: repeat the login with `otp`."
_MFA_ENROLMENT = (
    "This tenant requires two-factor authentication: set up an authenticator app at {url} "
    "first, then log in with `otp`."
)
_REGISTRATION_ACCEPTED = (
    "If the address can be registered, a confirmation token is on its way to it: "
    "send it with your password to confirm_url to create the account."
)
_CONFIRMATION_REFUSED = "The confirmation token is unknown or expired, or the password does not match."
_LOGIN_WINDOW_SECONDS = 60
_DEMO_RATE = "10/m"

TokenPairSerializer = inline_serializer(
    "TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()}
)


class PublicAuthView(APIView):
    """Endpoints reachable without credentials; failures are problem+json like the data plane."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser]

    def throttled(self, request, group: str, *names: str, rate: str | None = None):
        """django-ratelimit per client IP and per each given name; a 429 problem when over."""
        rate = rate or settings.LOGIN_RATE_LIMIT
        keys = [f"ip:{client_ip(request)}", *(f"name:{name}" for name in names if name)]
        limited = False
        for key in keys:
            limited |= is_ratelimited(
                request, group=group, key=lambda _g, _r, key=key: key, rate=rate, increment=True
            )
        if not limited:
            return None
        response = problem_response(request, "RATE_LIMIT", "Too many attempts; wait a minute and retry.")
        response["Retry-After"] = str(_LOGIN_WINDOW_SECONDS)
        return response


def _user_for_login(name: str) -> User | None:
    return (
        User.objects.filter(Q(username__iexact=name) | Q(email__iexact=name)).select_related("tenant").first()
    )


def _check_password(name: str, password: str) -> User | None:
    candidate = _user_for_login(name)
    username = candidate.username if candidate is not None else name
    user = authenticate(username=username, password=password)
    return user if user is not None and user.is_active else None


def _check_credentials(name: str, password: str, otp: str | None) -> tuple[User | None, SecondFactor]:
    """Password, then the second factor; a wrong code fails like a wrong password (no user)."""
    user = _check_password(name, password)
    if user is None:
        return None, SecondFactor.INVALID
    second = check_second_factor(user, otp)
    return (None if second is SecondFactor.INVALID else user), second


def _second_factor_refusal(request, second: SecondFactor) -> JsonResponse | None:
    """The challenge (401 MFA_REQUIRED) or the enrolment demand (403); no tokens with either."""
    if second is SecondFactor.MISSING:
        challenge = {"methods": list(MFA_METHODS)}
        response = problem_response(request, "MFA_REQUIRED", _MFA_CHALLENGE, mfa=challenge)
        response["WWW-Authenticate"] = 'Bearer realm="gateway"'  # RFC 9110: a 401 names a scheme
        return response
    if second is SecondFactor.ENROLMENT_REQUIRED:
        url = reverse("mfa:enrolment")
        demand = {"enrolment_required": True, "enrol_url": url}
        return problem_response(request, "FORBIDDEN", _MFA_ENROLMENT.format(url=url), mfa=demand)
    return None


class LoginView(PublicAuthView):
    @extend_schema(request=LoginSerializer, responses={200: TokenPairSerializer}, tags=["auth"])
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if (limited := self.throttled(request, "login", serializer.login_name)) is not None:
            return limited
        data = serializer.validated_data
        user, second = _check_credentials(serializer.login_name, data["password"], data.get("otp"))
        if user is None:
            return problem_response(request, "AUTH_ERROR", _BAD_CREDENTIALS)
        if (refusal := _second_factor_refusal(request, second)) is not None:
            return refusal
        return Response(tokens_for_user(user))


RegistrationAcceptedSerializer = inline_serializer(
    "RegistrationAccepted", {"detail": serializers.CharField(), "confirm_url": serializers.CharField()}
)


class RegisterView(PublicAuthView):
    """The same 201 for a new and a registered address; the account waits for the e-mailed token."""

    @extend_schema(request=RegisterSerializer, responses={201: RegistrationAcceptedSerializer}, tags=["auth"])
    def post(self, request):
        if (
            limited := self.throttled(request, "register", str(request.data.get("email", "")).lower())
        ) is not None:
            return limited
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        urls = {
            "confirm": request.build_absolute_uri(reverse("auth-register-confirm")),
            "login": request.build_absolute_uri(reverse("auth-login")),
        }
        start_registration(data["email"], data["password"], data.get("tenant_name"), urls)
        body = {"detail": _REGISTRATION_ACCEPTED, "confirm_url": urls["confirm"]}
        return Response(body, status=status.HTTP_201_CREATED)


class RegisterConfirmView(PublicAuthView):
    """Creates the account from the e-mailed token and the registration's password."""

    @extend_schema(request=RegisterConfirmSerializer, responses={201: TokenPairSerializer}, tags=["auth"])
    def post(self, request):
        if (limited := self.throttled(request, "register-confirm")) is not None:
            return limited
        serializer = RegisterConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            user = confirm_registration(data["token"], data["password"])
        except RegistrationError as exc:
            return problem_response(request, "CONFLICT", str(exc))
        if user is None:
            return problem_response(request, "AUTH_ERROR", _CONFIRMATION_REFUSED)
        return Response(tokens_for_user(user), status=status.HTTP_201_CREATED)


class RefreshView(PublicAuthView):
    """Rotation with blacklist: the old refresh token is dead once the new pair is issued."""

    @extend_schema(
        request=inline_serializer("RefreshRequest", {"refresh": serializers.CharField()}),
        responses={200: TokenPairSerializer},
        tags=["auth"],
    )
    def post(self, request):
        serializer = GatewayTokenRefreshSerializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except (TokenError, AuthenticationFailed):  # expired, blacklisted, forged, inactive user
            return problem_response(request, "AUTH_ERROR", _BAD_CREDENTIALS)
        return Response(serializer.validated_data)


class LogoutView(PublicAuthView):
    """Blacklists the refresh token and revokes the access token's jti on every instance."""

    @extend_schema(
        request=inline_serializer("LogoutRequest", {"refresh": serializers.CharField(required=False)}),
        responses={204: None},
        tags=["auth"],
    )
    def post(self, request):
        revoked_any = False
        refresh = request.data.get("refresh")
        if refresh:
            try:
                GatewayRefreshToken(str(refresh)).blacklist()
                revoked_any = True
            except TokenError:
                return problem_response(request, "AUTH_ERROR", _BAD_CREDENTIALS)
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.lower().startswith("bearer "):
            try:
                claims = decode_gateway_token(header[7:].strip())
            except Exception:
                return problem_response(request, "AUTH_ERROR", _BAD_CREDENTIALS)
            revoke_jti(claims["jti"], float(claims["exp"]))
            revoked_any = True
        if not revoked_any:
            return problem_response(request, "AUTH_ERROR", "Send the refresh token and/or the access token.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class OAuthTokenView(PublicAuthView):
    """OAuth2 password grant (form-encoded), as Swagger UI's Authorize dialog sends it."""

    parser_classes = [FormParser, MultiPartParser, JSONParser]

    @extend_schema(
        request=inline_serializer(
            "OAuthTokenRequest",
            {
                "grant_type": serializers.CharField(),
                "username": serializers.CharField(),
                "password": serializers.CharField(),
                "otp": serializers.CharField(required=False),
            },
        ),
        responses={
            200: inline_serializer(
                "OAuthTokenResponse",
                {
                    "access_token": serializers.CharField(),
                    "token_type": serializers.CharField(),
                    "expires_in": serializers.IntegerField(),
                    "refresh_token": serializers.CharField(),
                },
            )
        },
        tags=["auth"],
    )
    def post(self, request):
        if request.data.get("grant_type", "password") != "password":
            return Response({"error": "unsupported_grant_type"}, status=400)
        name = str(request.data.get("username", "")).lower()
        if (limited := self.throttled(request, "login", name)) is not None:
            return limited
        password, otp = str(request.data.get("password", "")), str(request.data.get("otp", ""))
        user, second = _check_credentials(name, password, otp)
        if user is None:
            error = {"error": "invalid_grant", "error_description": _BAD_CREDENTIALS}
            return Response(error, status=400)
        if (refusal := _second_factor_refusal(request, second)) is not None:
            return refusal
        tokens = tokens_for_user(user)
        return Response(
            {
                "access_token": tokens["access"],
                "token_type": "bearer",
                "expires_in": int(settings.JWT_ACCESS_LIFETIME),
                "refresh_token": tokens["refresh"],
            }
        )


class DemoSessionView(PublicAuthView):
    """A short-lived token for a fresh demo session in a demo tenant (no account needed)."""

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "DemoSession",
                {
                    "access": serializers.CharField(),
                    "demo_session": serializers.CharField(),
                    "tenant": serializers.CharField(),
                    "expires_in": serializers.IntegerField(),
                },
            )
        },
        tags=["auth"],
    )
    def post(self, request):
        if (limited := self.throttled(request, "demo", rate=_DEMO_RATE)) is not None:
            return limited
        tenant = Tenant.objects.filter(is_demo=True).order_by("pk").first()
        if tenant is None:
            return problem_response(request, "SERVICE_UNAVAILABLE", "No demo tenant is configured.")
        lifetime = timedelta(seconds=settings.JWT_DEMO_LIFETIME)
        session = DemoSession.objects.create(
            key=secrets.token_urlsafe(24),
            tenant=tenant,
            client_ip=client_ip(request) or None,
            expires_at=timezone.now() + lifetime,
        )
        token = GatewayAccessToken()
        token.set_exp(lifetime=lifetime)
        token["sub"] = f"demo:{session.key}"
        token["tenant"] = tenant.slug
        token["roles"] = ["member"]
        token["scopes"] = ["read", "write"]
        token["demo_session"] = session.key
        return Response(
            {
                "access": str(token),
                "demo_session": session.key,
                "tenant": tenant.slug,
                "expires_in": int(lifetime.total_seconds()),
            },
            status=status.HTTP_201_CREATED,
        )


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: UserSerializer}, tags=["auth"])
    def get(self, request):
        return Response(UserSerializer(request.user).data)


def jwks_view(request):
    """Public keys (RFC 7517) so upstream services can verify the gateway's tokens themselves."""
    response = JsonResponse(key_ring().jwks())
    response["Cache-Control"] = "public, max-age=300"
    return response
