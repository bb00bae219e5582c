from django.db import models

__all__ = ["ConfigState"]


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
