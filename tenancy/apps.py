from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from registry.signals import connect_config_signals
        from tenancy.audit.signals import connect_audit_signals
        from tenancy.models import IdentityProvider, Subscription, Tenant

        connect_config_signals(Tenant, Subscription, IdentityProvider)
        connect_audit_signals()
