"""A staff member watches the dashboard in a real browser while the gateway serves traffic."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.live import GatewayServer, RecordingUpstream, free_port
from tests.proxy.test_dashboard import clear_shared_traffic

REASON = "Chargeback under review"


@pytest.fixture(autouse=True)
def _no_shared_traffic():
    clear_shared_traffic()
    yield
    clear_shared_traffic()


@pytest.fixture
def upstream():
    server = RecordingUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def gateway(transactional_db, settings):
    settings.RATE_LIMIT_DEFAULT = ""
    server = GatewayServer().start()
    yield server
    server.stop()


def register(slug: str, url: str, **fields):
    from registry.models import Service, Target

    fields.setdefault("auth_required", False)
    service = Service.objects.create(name=slug.title(), slug=slug, path_prefix=f"/api/v1/{slug}", **fields)
    Target.objects.create(service=service, url=url)
    return service


def check_health_now(*services) -> None:
    """A real health check of these services' targets, as the admin action runs it.

    It runs its own event loop, so it goes to a worker thread: this thread has Playwright's.
    """
    from django.db import connection

    from registry.health import check_targets_now
    from registry.models import Target

    def run():
        try:
            check_targets_now(Target.objects.filter(service__in=services))
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result(15)


def send(base_url: str, path: str, times: int) -> list[int]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        return [client.get(path).status_code for _ in range(times)]


def path_heights(d: str) -> set[float]:
    """The distinct y coordinates of an SVG path's points."""
    return {float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", d)}


@pytest.mark.browser
def test_staff_watch_services_breakers_and_live_traffic(page, gateway, upstream, artifacts_dir):
    from tenancy.models import Tenant, User

    User.objects.create_superuser("ops", "ops@example.com", "ops-pass-123")
    Tenant.objects.create(name="Bakery Madrid", slug="bakery-madrid", read_only=True, read_only_reason=REASON)

    # Given sales answering, billing pointing at a closed port, inventory idle
    sales = register("sales", upstream.url, retries=0, breaker_failure_threshold=50)
    billing = register(
        "billing",
        f"http://127.0.0.1:{free_port()}",
        retries=0,
        breaker_failure_threshold=2,
        breaker_minimum_throughput=2,
    )
    register("inventory", upstream.url)
    check_health_now(sales, billing)
    gateway.sync()

    # And traffic: sales mostly fine with a few 500s and 404s; billing fails until its
    # breaker opens and then answers 503 fast
    assert send(gateway.url, "/api/v1/sales/orders", 40) == [200] * 40
    assert send(gateway.url, "/api/v1/sales/status/500", 3) == [500] * 3
    assert send(gateway.url, "/api/v1/sales/status/404", 5) == [404] * 5
    assert send(gateway.url, "/api/v1/billing/invoices", 4) == [502, 502, 503, 503]

    # When a staff member logs in and opens the dashboard
    page.goto(f"{gateway.url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")
    page.wait_for_url("**/dashboard/")
    page.wait_for_selector('[data-testid="live-status"][data-state="live"]')

    # Then every service is listed with its prefix and health
    names = page.locator('[data-testid="service-name"]').all_text_contents()
    assert names == ["Billing", "Inventory", "Sales"]
    billing_card = page.locator('[data-service="billing"]')
    sales_card = page.locator('[data-service="sales"]')
    assert sales_card.locator('[data-testid="service-prefix"]').text_content() == "/api/v1/sales"
    assert sales_card.locator('[data-testid="service-status"]').text_content() == "healthy"
    assert billing_card.locator('[data-testid="service-status"]').text_content() == "unhealthy"

    # And billing's target shows its open breaker; sales' stays closed after a health check
    breaker = billing_card.locator('[data-testid="breaker-state"]')
    assert (breaker.text_content(), breaker.get_attribute("data-state")) == ("open", "open")
    assert "2 failures" in billing_card.locator('[data-testid="target-row"]').inner_text()
    assert "retry in" in billing_card.locator('[data-testid="target-row"]').inner_text()
    sales_row = sales_card.locator('[data-testid="target-row"]')
    assert sales_row.locator('[data-testid="breaker-state"]').text_content() == "closed"
    assert sales_row.locator('[data-testid="target-url"]').text_content() == upstream.url
    assert f"#{sales.targets.get().pk} · weight 100" in sales_row.inner_text()
    assert re.search(r"200 · \d+\sms · (just now|\d+\ss ago)", sales_row.inner_text())

    # And sales' traffic chart has drawn its requests and errors; idle inventory says so
    chart = sales_card.locator('[data-testid="chart-traffic"]')
    assert chart.get_attribute("data-empty") == "false"
    requests_line = chart.locator('path[data-series="rps"]')
    assert requests_line.get_attribute("data-points") == "90"
    assert len(path_heights(requests_line.get_attribute("d"))) > 1  # not a flat line
    errors_line = chart.locator('path[data-series="errors_per_s"]')
    assert len(path_heights(errors_line.get_attribute("d"))) > 1
    assert "Requests" in chart.locator(".legend").inner_text()
    assert chart.locator("text.tick").count() >= 3
    latency = sales_card.locator('[data-testid="chart-latency"]')
    assert latency.get_attribute("data-empty") == "false"
    # (hovering reads out a bucket's values and time)
    assert chart.locator(".chart-when").text_content() == "now"
    overlay = chart.locator("rect.overlay")
    box = overlay.bounding_box()
    overlay.hover(position={"x": box["width"] - 1, "y": box["height"] / 2})
    assert re.fullmatch(r"at \d\d:\d\d:\d\d", chart.locator(".chart-when").text_content())
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    idle = page.locator('[data-service="inventory"] [data-testid="chart-traffic"]')
    assert idle.locator('[data-testid="chart-empty"]').text_content() == "No traffic yet"

    # And the read-only tenant with its reason, the served config version and SSE streams
    tenant = page.locator('[data-testid="read-only-tenant"]')
    assert tenant.count() == 1 and REASON in tenant.inner_text()
    version = page.locator('[data-testid="config-version"]').text_content()
    assert version == str(gateway.runtime.snapshot.version)
    assert page.locator('[data-testid="sse-connections"]').text_content() == "0"

    # And it fits a laptop screen without horizontal scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=os.path.join(artifacts_dir, "dashboard.png"), full_page=True)

    # When more happens while the page stays open, it updates in place (no reload)
    page.evaluate("window.__stillTheSamePage = true")
    Tenant.objects.create(
        name="Bakery Sevilla",
        slug="bakery-sevilla",
        read_only=True,
        read_only_reason="Unpaid invoices",
    )
    assert send(gateway.url, "/api/v1/sales/orders", 20) == [200] * 20
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=read-only-tenant]').length === 2", timeout=6000
    )
    assert page.evaluate("window.__stillTheSamePage") is True

    # And polling pauses while the tab is hidden, and resumes when it is shown again
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    assert page.get_attribute('[data-testid="live-status"]', "data-state") == "paused"
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_selector('[data-testid="live-status"][data-state="live"]')
