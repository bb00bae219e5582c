"""The admin's forms fit a 1366x768 laptop screen and show what a value is, in a real browser:
the service's targets inline does not scroll sideways, its blank row claims no health, and
number inputs are wide enough for the numbers they hold."""

from __future__ import annotations

import os

import pytest

from registry.models import Service, Target
from tenancy.models import User

VIEWPORT = {"width": 1366, "height": 768}
LONG_TARGET_URL = "http://sales-primary.internal.bakery.example:18080"
MIN_DIGITS = 6  # grace days, thresholds, weights and seconds all fit; byte sizes get more room
SPINNER_PX = 20

OVERFLOW_JS = """(selector) => [...document.querySelectorAll(selector)].map(
    (el) => ({scroll: el.scrollWidth, client: el.clientWidth}))"""
OPEN_COLLAPSED_JS = "document.querySelectorAll('details').forEach((d) => { d.open = true; })"
# Inputs whose text box (less padding and the spin buttons) cannot show their value padded
# to MIN_DIGITS digits, measured in the input's own font.
NARROW_NUMBERS_JS = """([minDigits, spinnerPx]) => {
    const ctx = document.createElement('canvas').getContext('2d');
    return [...document.querySelectorAll('input[type=number]')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => {
            const style = getComputedStyle(el);
            ctx.font = style.font;
            const text = el.value.padEnd(minDigits, '0');
            const room = el.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight) - spinnerPx;
            return ctx.measureText(text).width > room;
        })
        .map((el) => `${el.name}: ${el.clientWidth}px for ${el.value}`);
}"""


@pytest.fixture(autouse=True, scope="module")
def _orm_beside_playwright(django_db_setup):
    """Playwright's sync API keeps an event loop running in this thread; see test_browser_admin."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def laptop(browser, live_server, transactional_db):
    """A staff member's browser at 1366x768, logged into the admin."""
    User.objects.create_superuser("ops", "ops@example.com", "ops-pass-123")
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def assert_no_horizontal_overflow(page, selector: str) -> None:
    boxes = page.evaluate(OVERFLOW_JS, selector)
    assert boxes, f"nothing matches {selector}"
    assert all(box["scroll"] <= box["client"] for box in boxes), f"{selector} overflows: {boxes}"


@pytest.mark.browser
def test_the_targets_inline_fits_a_laptop_and_its_blank_row_claims_no_health(
    live_server, laptop, artifacts_dir
):
    # Given a service with a healthy and an unhealthy target
    service = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")
    Target.objects.create(service=service, url=LONG_TARGET_URL)
    Target.objects.create(service=service, url="http://10.0.0.7:8080", healthy=False)

    # When staff open the service at 1366x768
    laptop.goto(f"{live_server.url}/admin/registry/service/{service.pk}/change/")
    laptop.screenshot(path=os.path.join(artifacts_dir, "admin-service-targets-1366.png"), full_page=True)

    # Then neither the targets inline nor the page scrolls sideways
    assert_no_horizontal_overflow(laptop, "#targets-group fieldset.module")
    assert_no_horizontal_overflow(laptop, "html")
    # And the saved rows show their health while the blank extra row shows none
    rows = laptop.locator("#targets-group tbody tr.form-row:not(.empty-form)")
    assert rows.count() == 3
    assert rows.nth(0).locator("td.field-health img[alt=True]").count() == 1
    assert rows.nth(1).locator("td.field-health img[alt=False]").count() == 1
    assert rows.nth(2).locator("td.field-health img").count() == 0
    assert rows.nth(2).locator("td.field-breaker_state").inner_text().strip() in ("", "-")


@pytest.mark.browser
def test_number_inputs_show_their_values(live_server, laptop, artifacts_dir):
    # When staff open the add forms that hold numbers (the breaker fieldset expanded)
    laptop.goto(f"{live_server.url}/admin/registry/service/add/")
    laptop.evaluate(OPEN_COLLAPSED_JS)
    laptop.screenshot(path=os.path.join(artifacts_dir, "admin-service-add-1366.png"), full_page=True)

    # Then every visible number input is wide enough for its value
    assert laptop.evaluate(NARROW_NUMBERS_JS, [MIN_DIGITS, SPINNER_PX]) == []
    assert laptop.input_value("#id_breaker_failure_threshold") == "5"
    assert laptop.input_value("#id_max_body_bytes") == "10485760"

    laptop.goto(f"{live_server.url}/admin/tenancy/subscription/add/")
    assert laptop.evaluate(NARROW_NUMBERS_JS, [MIN_DIGITS, SPINNER_PX]) == []
    laptop.goto(f"{live_server.url}/admin/tenancy/tenant/add/")
    assert laptop.evaluate(NARROW_NUMBERS_JS, [MIN_DIGITS, SPINNER_PX]) == []
    laptop.screenshot(path=os.path.join(artifacts_dir, "admin-tenant-add-1366.png"), full_page=True)
