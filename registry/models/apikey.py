import hashlib
import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from registry.choices import Role
from registry.validators import json_nulls_to_defaults, validate_scope_list

__all__ = ["ApiKey", "hash_api_key"]

API_KEY_PREFIX = "gwk"
_SECRET_BYTES = 32
_VISIBLE_PREFIX_LENGTH = 8


def hash_api_key(secret: str) -> str:
    """SHA-256 hex of the key: only this is stored; the data plane compares it in constant time."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    """A tenant-scoped API key; the secret is shown once at creation and only its hash is kept."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True, validators=[validate_scope_list])
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        json_nulls_to_defaults(self)
        if self.expires_at is not None and self.expires_at <= timezone.now() and self._expiry_changed():
            raise ValidationError(
                {"expires_at": "Choose a moment in the future (or none: the key never expires)."},
                code="expiry_in_past",
            )

    def _expiry_changed(self) -> bool:
        """A key that has since expired may still be edited (renamed, revoked) as it is."""
        if self._state.adding or self.pk is None:
            return True
        stored = ApiKey.objects.filter(pk=self.pk).values_list("expires_at", flat=True).first()
        return stored != self.expires_at

    def assign_new_secret(self) -> str:
        """Give the key a fresh secret and return it; the caller shows it once, we keep the hash."""
        visible = secrets.token_hex(_VISIBLE_PREFIX_LENGTH // 2)
        secret = f"{API_KEY_PREFIX}_{visible}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        self.prefix = f"{API_KEY_PREFIX}_{visible}"
        self.key_hash = hash_api_key(secret)
        return secret

    def revoke(self) -> None:
        self.revoked = True
        self.revoked_at = timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > timezone.now())
