"""Portal pages: sign in and out, and the usage page (charts, quota bars, plan, alerts)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_ratelimit.core import is_ratelimited

from alerts.models import Alert
from gateway_project.core.clientip import client_ip
from portal.access import can_manage_keys, portal_member
from portal.charts import Bar, bar_chart
from portal.constants import DAILY_CHART_DAYS, HOURLY_CHART_HOURS, LOGIN_RATE_GROUP, RECENT_ALERTS
from tenancy.mfa.second_factor import AccountLoginForm
from usage.choices import Granularity
from usage.quota_use import quota_use
from usage.report import usage_rows

__all__ = ["PortalLoginView", "home", "portal_logout", "usage"]

TOO_MANY_ATTEMPTS = "Too many attempts; wait a minute and retry."


class PortalLoginView(LoginView):
    """The same users, passwords and second factor as the admin and the API logins."""

    form_class = AccountLoginForm
    template_name = "portal/login.html"

    def post(self, request, *args, **kwargs):
        name = request.POST.get("username", "").lower()
        limited = False
        for key in (f"ip:{client_ip(request)}", f"name:{name}"):
            limited |= is_ratelimited(
                request,
                group=LOGIN_RATE_GROUP,
                key=lambda _g, _r, key=key: key,
                rate=settings.LOGIN_RATE_LIMIT,
                increment=True,
            )
        if limited:
            context = self.get_context_data(form=self.form_class(request), error=TOO_MANY_ATTEMPTS)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def get_default_redirect_url(self) -> str:
        return reverse("portal:usage")


@require_POST
def portal_logout(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("portal:login")


def home(request: HttpRequest) -> HttpResponse:
    return redirect("portal:usage")


@portal_member
def usage(request: HttpRequest) -> HttpResponse:
    tenant = request.user.tenant
    subscription = getattr(tenant, "subscription", None)
    context = {
        "tenant": tenant,
        "subscription": subscription,
        "plan": subscription.plan if subscription is not None else None,
        "quotas": quota_use(tenant),
        "services": _service_charts(tenant.slug),
        "alerts": Alert.objects.filter(tenant=tenant)[:RECENT_ALERTS],
        "can_manage_keys": can_manage_keys(request.user),
    }
    return render(request, "portal/usage.html", context)


def _service_charts(tenant: str) -> list[dict]:
    """Per service: the last 24 hours by hour and the last 30 days by day."""
    now = timezone.now()
    hour_end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    hours = [hour_end - timedelta(hours=n) for n in range(HOURLY_CHART_HOURS, 0, -1)]
    day_end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    days = [day_end - timedelta(days=n) for n in range(DAILY_CHART_DAYS, 0, -1)]
    hourly = usage_rows(hours[0], hour_end, Granularity.HOUR, tenant)
    daily = usage_rows(days[0], day_end, Granularity.DAY, tenant)
    services = sorted({row.service for row in [*hourly, *daily]})
    return [
        {
            "slug": service,
            "hourly": bar_chart(_bars(hourly, service, hours, "%H:00"), f"{service}: requests per hour"),
            "daily": bar_chart(_bars(daily, service, days, "%b %d"), f"{service}: requests per day"),
            "today": _totals(daily, service, days[-1]),
        }
        for service in services
    ]


def _bars(rows, service: str, periods, label_format: str) -> list[Bar]:
    by_period = {row.period_start: row for row in rows if row.service == service}
    bars = []
    for start in periods:
        row = by_period.get(start)
        errors = (row.status_4xx + row.status_5xx) if row else 0
        bars.append(Bar(start.strftime(label_format), row.requests if row else 0, errors))
    return bars


def _totals(rows, service: str, day) -> dict:
    row = next((r for r in rows if r.service == service and r.period_start == day), None)
    if row is None:
        return {"requests": 0, "errors": 0, "p95": None}
    return {"requests": row.requests, "errors": row.status_4xx + row.status_5xx, "p95": row.latency_ms(0.95)}
