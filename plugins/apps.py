from django.apps import AppConfig


class PluginsConfig(AppConfig):
    name = "plugins"
    verbose_name = "Plugins"

    def ready(self) -> None:
        from plugins.models import PluginConfig
        from registry.signals import connect_config_signals

        connect_config_signals(PluginConfig)
