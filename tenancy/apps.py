from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from registry.signals import connect_config_signals, connect_m2m_config_signals
        from tenancy.audit.signals import connect_audit_signals
        from tenancy.models import IdentityProvider, Plan, ServiceQuota, Subscription, Tenant

        connect_config_signals(Tenant, Subscription, IdentityProvider, Plan, ServiceQuota)
        connect_m2m_config_signals(Plan.rate_policies.through)
        connect_audit_signals()
