from django.apps import AppConfig


class DeclarativeConfig(AppConfig):
    """Export, diff and apply of the registry as a file (`manage.py gateway_config`, /api/manage/config/)."""

    name = "declarative"
    verbose_name = "Configuration as code"
