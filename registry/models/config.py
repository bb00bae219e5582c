from django.db import models

from registry.choices import ChangeKind

__all__ = ["ConfigChange", "ConfigState"]


class ConfigState(models.Model):
    """The single row holding the registry's config version; the data plane rebuilds when it moves.

    The database row is the durable counter (it survives a Redis flush); the cache and
    Redis pub/sub only make every instance notice a bump within a second.
    """

    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = "config state"

    def __str__(self) -> str:
        return f"config v{self.version}"


class ConfigChange(models.Model):
    """What one config version changed, written in the same transaction as the bump.

    Instances read the rows after the version they serve and rebuild only those entries
    of their snapshot (SPEC section 23); a row is never lost or seen out of order the way a
    pub/sub message can be. Old rows are pruned: an instance further behind rebuilds whole.
    """

    version = models.PositiveBigIntegerField(db_index=True)
    kind = models.CharField(max_length=24, choices=ChangeKind.choices)
    key = models.BigIntegerField(default=0, help_text="Primary key of the changed service, tenant, ...")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "pk"]
        verbose_name = "config change"

    def __str__(self) -> str:
        return f"v{self.version}: {self.kind} {self.key}"
