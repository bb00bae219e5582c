"""Thin receivers: any change to a registry or tenancy model moves the config version and
says which snapshot entry it changed (a target changes its service's entry, a subscription
its tenant's), so instances rebuild only that entry (SPEC section 23)."""

from django.db.models.signals import m2m_changed, post_delete, post_save

from registry.choices import ChangeKind
from registry.config_version import bump_config_version

__all__ = ["connect_config_signals", "connect_m2m_config_signals"]

# Model label -> (the snapshot entry it belongs to, the attribute holding that entry's key).
# A model missing here (a new one) is announced as ALL: instances rebuild the whole snapshot.
SNAPSHOT_ENTRY_OF = {
    "registry.service": (ChangeKind.SERVICE, "pk"),
    "registry.target": (ChangeKind.SERVICE, "service_id"),
    "registry.serviceversion": (ChangeKind.SERVICE, "service_id"),
    "registry.apikey": (ChangeKind.API_KEY, "pk"),
    "registry.ratepolicy": (ChangeKind.RATE_POLICY, "pk"),
    "tenancy.tenant": (ChangeKind.TENANT, "pk"),
    "tenancy.subscription": (ChangeKind.TENANT, "tenant_id"),
    "tenancy.identityprovider": (ChangeKind.IDENTITY_PROVIDER, "pk"),
}


def _on_change(sender, instance, raw=False, **kwargs) -> None:
    if raw:  # fixture loading: the loader bumps once at the end
        return
    kind, attribute = SNAPSHOT_ENTRY_OF.get(sender._meta.label_lower, (ChangeKind.ALL, None))
    bump_config_version(kind, getattr(instance, attribute) if attribute else 0)


def connect_config_signals(*models) -> None:
    for model in models:
        uid = f"config-version-{model._meta.label_lower}"
        post_save.connect(_on_change, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"{uid}-delete")


def _on_m2m_change(sender, instance, action: str, **kwargs) -> None:
    if action.startswith("post_"):
        bump_config_version()


def connect_m2m_config_signals(*throughs) -> None:
    """Many-to-many edits (a plan's default rate policies) move the version too."""
    for through in throughs:
        uid = f"config-version-{through._meta.label_lower}-m2m"
        m2m_changed.connect(_on_m2m_change, sender=through, dispatch_uid=uid)
