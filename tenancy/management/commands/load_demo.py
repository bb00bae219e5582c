"""`manage.py load_demo`: load the demo tenants, users and services (SPEC section 12).

Idempotent: every row is upserted on its natural key, so a second run creates nothing
and rows the demo does not name are never touched. Demo only: the passwords are public.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from alerts.models import NotificationRule
from fixtures import demo_data
from fixtures.demo_ports import demo_url
from registry.models import RatePolicy, Service, Target
from tenancy.models import Subscription, Tenant, User


def days_from_today(days: int) -> datetime:
    """UTC midnight `days` from today: stable across reloads on the same day."""
    today = timezone.now().date()
    return datetime.combine(today + timedelta(days=days), time.min, tzinfo=UTC)


class Command(BaseCommand):
    help = "Load the demo tenants, users, services and policies (idempotent; never in production)."

    def handle(self, *args, **options) -> None:
        self.created: Counter[str] = Counter()
        self.updated: Counter[str] = Counter()
        with transaction.atomic():
            tenants = self.load_tenants()
            self.load_users(tenants)
            self.load_services()
            self.load_rate_policies()
            self.load_notification_rules(tenants)
        self.print_summary()

    def record(self, label: str, created: bool) -> None:
        (self.created if created else self.updated)[label] += 1

    def load_tenants(self) -> dict[str, Tenant]:
        tenants = {}
        for spec in demo_data.TENANTS:
            fields = {k: v for k, v in spec.items() if k not in ("slug", "subscription")}
            fields.setdefault("is_demo", False)
            tenant, created = Tenant.objects.update_or_create(slug=spec["slug"], defaults=fields)
            self.record("tenants", created)
            self.load_subscription(tenant, {**demo_data.DEFAULT_SUBSCRIPTION, **spec.get("subscription", {})})
            tenants[tenant.slug] = tenant
        return tenants

    def load_subscription(self, tenant: Tenant, spec: dict) -> None:
        _, created = Subscription.objects.update_or_create(
            tenant=tenant,
            defaults={
                "status": spec["status"],
                "grace_days": spec["grace_days"],
                "current_period_end": days_from_today(spec["period_end_days"]),
            },
        )
        self.record("subscriptions", created)

    def load_users(self, tenants: dict[str, Tenant]) -> None:
        for spec in demo_data.USERS:
            username = spec["username"]
            user, created = User.objects.update_or_create(
                username=username,
                defaults={
                    "email": username if "@" in username else "",
                    "tenant": tenants[spec["tenant"]] if spec["tenant"] else None,
                    "role": spec["role"],
                    "is_staff": spec.get("is_staff", False),
                    "is_superuser": spec.get("is_superuser", False),
                    "is_active": True,
                },
            )
            password = spec.get("password", demo_data.DEMO_PASSWORD)
            if not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            self.record("users", created)

    def load_services(self) -> None:
        for spec in demo_data.SERVICES:
            fields = {k: v for k, v in spec.items() if k != "slug"}
            service, created = Service.objects.update_or_create(slug=spec["slug"], defaults=fields)
            self.record("services", created)
            _, created = Target.objects.update_or_create(
                service=service, url=demo_url(service.slug), defaults={"enabled": True}
            )
            self.record("targets", created)

    def load_rate_policies(self) -> None:
        for spec in demo_data.RATE_POLICIES:
            fields = {k: v for k, v in spec.items() if k != "name"}
            _, created = RatePolicy.objects.update_or_create(name=spec["name"], defaults=fields)
            self.record("rate policies", created)

    def load_notification_rules(self, tenants: dict[str, Tenant]) -> None:
        for spec in demo_data.NOTIFICATION_RULES:
            _, created = NotificationRule.objects.update_or_create(
                tenant=tenants[spec["tenant"]],
                channel=spec["channel"],
                destination=spec["destination"],
                defaults={"min_severity": spec["min_severity"], "enabled": True},
            )
            self.record("notification rules", created)

    def print_summary(self) -> None:
        labels = dict.fromkeys([*self.created, *self.updated])  # in load order
        parts = [f"{label} {self.created[label]} new / {self.updated[label]} kept" for label in labels]
        self.stdout.write(self.style.SUCCESS("Demo data loaded: " + "; ".join(parts) + "."))
        self.stdout.write("Demo passwords are public: never load the demo data in production.")
