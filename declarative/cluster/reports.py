"""What data planes tell their control plane, and what it answers them."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from declarative.export import export_document
from declarative.models import DataPlane
from registry.config_version import current_config_version
from tenancy.keys import key_ring

__all__ = ["NOT_FOR_DATA_PLANES", "data_plane_config", "record_data_plane"]

NOT_FOR_DATA_PLANES = "notification_rules"


def data_plane_config() -> dict:
    """The registry as a data plane gets it: API keys as hashes, secrets as `${ENV}` names,
    no notification rules, the public keys its tokens verify with, and the version."""
    with transaction.atomic():  # the version and the document from one transaction
        version = current_config_version()
        document = export_document(include_key_hashes=True)
    # Alerts run on the control plane: their rules (e-mail addresses, phone numbers, webhook
    # URLs) never leave it.
    document.pop(NOT_FOR_DATA_PLANES, None)
    return {"version": version, "document": document, "jwks": key_ring().jwks()}


def record_data_plane(name: str, address: str | None, config_version: int) -> None:
    """A data plane asked for versions: it is alive and serves `config_version`."""
    DataPlane.objects.update_or_create(
        name=name,
        defaults={"address": address, "config_version": config_version, "last_seen_at": timezone.now()},
    )
