"""Thin receivers: any change to a registry or tenancy model moves the config version."""

from django.db.models.signals import post_delete, post_save

from registry.config_version import bump_config_version

__all__ = ["connect_config_signals"]


def _on_change(sender, instance, raw=False, **kwargs) -> None:
    if raw:  # fixture loading: the loader bumps once at the end
        return
    bump_config_version()


def connect_config_signals(*models) -> None:
    for model in models:
        uid = f"config-version-{model._meta.label_lower}"
        post_save.connect(_on_change, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"{uid}-delete")
