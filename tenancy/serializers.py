"""Request bodies of the auth endpoints."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from tenancy.models import User
from tenancy.registration import tenant_name_taken
from tenancy.tokens import GatewayRefreshToken

__all__ = [
    "GatewayTokenRefreshSerializer",
    "LoginSerializer",
    "RegisterConfirmSerializer",
    "RegisterSerializer",
    "UserSerializer",
]


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(required=False, max_length=150)
    email = serializers.EmailField(required=False, max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    otp = serializers.CharField(required=False, max_length=10)

    def validate(self, attrs):
        if not attrs.get("username") and not attrs.get("email"):
            raise serializers.ValidationError({"username": "Send a username or an email."})
        return attrs

    @property
    def login_name(self) -> str:
        return (self.validated_data.get("username") or self.validated_data.get("email") or "").lower()


class RegisterSerializer(serializers.Serializer):
    """A registration request; whether the address has an account is never part of the answer."""

    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    tenant_name = serializers.CharField(max_length=100, required=False)

    def validate_email(self, value: str) -> str:
        return value.lower()

    def validate_password(self, value: str) -> str:
        validate_password(value)
        return value

    def validate_tenant_name(self, value: str) -> str:
        # A chosen tenant name is checked the same way for every address: it reveals no account.
        if tenant_name_taken(value):
            raise serializers.ValidationError("A tenant with this name already exists.")
        return value


class RegisterConfirmSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100, help_text="The token from the confirmation e-mail.")
    password = serializers.CharField(
        max_length=256, trim_whitespace=False, help_text="The password sent to /register."
    )


class GatewayTokenRefreshSerializer(TokenRefreshSerializer):
    """simplejwt's rotation + blacklist, with the gateway's token class."""

    token_class = GatewayRefreshToken


class UserSerializer(serializers.ModelSerializer):
    tenant = serializers.SerializerMethodField()
    scopes = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "role",
            "scopes",
            "is_staff",
            "tenant",
        ]

    def get_tenant(self, user) -> dict | None:
        tenant = user.tenant
        if tenant is None:
            return None
        return {
            "slug": tenant.slug,
            "name": tenant.name,
            "read_only": tenant.read_only,
            "read_only_reason": tenant.read_only_reason,
            "is_demo": tenant.is_demo,
        }

    def get_scopes(self, user) -> list[str]:
        from gateway_project.core.roles import ROLE_SCOPES

        return list(ROLE_SCOPES.get(user.role, ()))
