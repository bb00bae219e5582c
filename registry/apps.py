from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registry"

    def ready(self) -> None:
        from registry.models import ApiKey, RatePolicy, Service, Target
        from registry.signals import connect_config_signals

        connect_config_signals(Service, Target, RatePolicy, ApiKey)
