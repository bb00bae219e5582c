"""Request bodies of the auth endpoints."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils.text import slugify
from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from tenancy.models import Tenant, User
from tenancy.tokens import GatewayRefreshToken

__all__ = [
    "GatewayTokenRefreshSerializer",
    "LoginSerializer",
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
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    tenant_name = serializers.CharField(max_length=100, required=False)

    def validate_email(self, value: str) -> str:
        if (
            User.objects.filter(email__iexact=value).exists()
            or User.objects.filter(username__iexact=value).exists()
        ):
            raise serializers.ValidationError("An account with this email already exists.")
        return value.lower()

    def validate_password(self, value: str) -> str:
        validate_password(value)
        return value

    def validate(self, attrs):
        name = attrs.get("tenant_name") or attrs["email"].split("@", 1)[1]
        if Tenant.objects.filter(name__iexact=name).exists():
            raise serializers.ValidationError({"tenant_name": "A tenant with this name already exists."})
        attrs["tenant_name"] = name
        return attrs

    @transaction.atomic
    def create(self, validated_data):
        from datetime import timedelta

        from django.utils import timezone

        from tenancy.models import Subscription

        tenant = Tenant.objects.create(
            name=validated_data["tenant_name"], slug=_unique_slug(validated_data["tenant_name"])
        )
        Subscription.objects.create(
            tenant=tenant,
            status="trialing",
            current_period_end=timezone.now() + timedelta(days=TRIAL_DAYS),
        )
        return User.objects.create_user(
            validated_data["email"],
            email=validated_data["email"],
            password=validated_data["password"],
            tenant=tenant,
            role="member",
        )


TRIAL_DAYS = 14


def _unique_slug(name: str) -> str:
    base = slugify(name)[:40] or "tenant"
    slug, suffix = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        suffix += 1
        slug = f"{base}-{suffix}"
    return slug


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
