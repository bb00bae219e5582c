from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registry"

    def ready(self) -> None:
        from registry.models import ApiKey, RatePolicy, Service, ServiceVersion, Target
        from registry.signals import connect_config_signals

        connect_config_signals(Service, ServiceVersion, Target, RatePolicy, ApiKey)
