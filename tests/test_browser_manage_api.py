"""Staff register a service through the browsable management API's HTML form, in a real browser:
the form starts from the same secure defaults as a JSON body, and targets can be entered."""

from __future__ import annotations

import json
import os

import pytest

from registry.models import Service
from tenancy.models import User

TARGET_URL = "http://10.20.30.40:8080"
FORM = "#post-object-form"


@pytest.fixture(autouse=True, scope="module")
def _orm_beside_playwright(django_db_setup):
    """Playwright's sync API keeps an event loop running in this thread; see test_browser_admin."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


def log_in(page, base_url: str, next_path: str) -> None:
    User.objects.create_superuser("ops", "ops@example.com", "ops-pass-123")
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


@pytest.mark.browser
def test_the_html_form_creates_an_authenticated_enabled_service_with_targets(
    live_server, page, transactional_db, artifacts_dir
):
    # Given a staff member on the services list of the browsable API
    log_in(page, live_server.url, "/api/manage/services/")
    form = page.locator(FORM)

    # Then the form starts from the model defaults, like a JSON body that leaves them out
    assert form.locator("input[name=auth_required]").is_checked()
    assert form.locator("input[name=enabled]").is_checked()
    assert not form.locator("input[name=websocket_enabled]").is_checked()
    assert json.loads(form.locator("textarea[name=allowed_methods]").input_value())
    assert "JSON list" in form.inner_text()

    # When they fill in only the name, slug, prefix and one target, and post the form
    form.locator("input[name=name]").fill("Billing")
    form.locator("input[name=slug]").fill("billing")
    form.locator("input[name=path_prefix]").fill("/api/v1/billing")
    form.locator("textarea[name=targets]").fill(json.dumps([{"url": TARGET_URL, "weight": 3}]))
    page.screenshot(path=os.path.join(artifacts_dir, "manage-api-service-form.png"), full_page=True)
    form.get_by_role("button", name="POST").click()
    page.wait_for_selector("text=HTTP 201 Created")

    # Then the service requires authentication, is enabled and has its target
    service = Service.objects.get(slug="billing")
    assert (service.auth_required, service.enabled) == (True, True)
    assert [(t.url, t.weight) for t in service.targets.all()] == [(TARGET_URL, 3)]
    page.screenshot(path=os.path.join(artifacts_dir, "manage-api-service-created.png"), full_page=True)
