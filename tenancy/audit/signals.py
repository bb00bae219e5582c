"""Thin receivers: every save or delete of an audited model becomes an AuditEvent."""

from django.db.models.signals import post_delete, post_save, pre_save

from tenancy.audit import trail

__all__ = ["connect_audit_signals"]


def _before_save(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if raw:  # fixture loading is not a management change
        return
    trail.capture_before(instance, update_fields)


def _after_save(sender, instance, created=False, raw=False, update_fields=None, **kwargs) -> None:
    if raw:
        return
    trail.record_save(instance, created, update_fields)


def _after_delete(sender, instance, **kwargs) -> None:
    trail.record_delete(instance)


def connect_audit_signals() -> None:
    for model in trail.audited_model_classes():
        uid = f"audit-{model._meta.label_lower}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}-pre-save")
        post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(_after_delete, sender=model, dispatch_uid=f"{uid}-delete")
