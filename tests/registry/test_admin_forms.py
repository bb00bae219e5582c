"""The registry admin's add forms start from the model defaults, as the API and config files do:
every method ticked, `{}` for header transforms, never a `null` in a box; the targets inline's
blank row claims no health."""

from __future__ import annotations

import re

from registry.constants import ALL_METHODS
from registry.models import Service, Target
from tests.control_plane import admin_url


def checked_values(page: str, name: str) -> set[str]:
    inputs = re.findall(rf'<input[^>]*name="{name}"[^>]*>', page)
    return {re.search(r'value="([^"]*)"', i).group(1) for i in inputs if " checked" in i}


def textarea(page: str, name: str) -> str:
    return re.search(rf'<textarea[^>]*name="{name}"[^>]*>\s*(.*?)</textarea>', page, re.S).group(1)


def test_the_service_add_form_starts_from_the_model_defaults(admin_client):
    page = admin_client.get(admin_url(Service, "add")).content.decode()

    assert checked_values(page, "allowed_methods") == set(ALL_METHODS)
    assert textarea(page, "header_transforms") == "{}"
    assert ">null<" not in page
    assert re.search(r'<input[^>]*name="auth_required"[^>]*checked', page)


def test_the_defaults_as_submitted_save_a_service_that_allows_every_method(admin_client):
    page = admin_client.get(admin_url(Service, "add")).content.decode()
    data = {
        "name": "Orders", "slug": "orders", "path_prefix": "/api/v1/orders",
        "enabled": "on", "auth_required": "on", "load_balancing": "weighted_round_robin",
        "allowed_methods": sorted(checked_values(page, "allowed_methods")),
        "header_transforms": textarea(page, "header_transforms"),
        "connect_timeout": "2", "read_timeout": "30", "retries": "2", "cache_ttl": "0",
        "default_version": "1", "breaker_failure_threshold": "5", "breaker_failure_window": "120",
        "breaker_minimum_throughput": "5", "breaker_recovery_timeout": "30",
        "breaker_success_threshold": "3", "health_path": "/health", "health_interval": "30",
        "max_body_bytes": str(10 * 1024 * 1024),
        "targets-TOTAL_FORMS": "0", "targets-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }  # fmt: skip

    response = admin_client.post(admin_url(Service, "add"), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    service = Service.objects.get(slug="orders")
    assert sorted(service.allowed_methods) == sorted(ALL_METHODS)
    assert service.header_transforms == {}


def test_the_targets_inline_shows_health_for_saved_rows_only(admin_client, service):
    Target.objects.create(service=service, url="http://127.0.0.1:9001", healthy=False)

    page = admin_client.get(admin_url(Service, "change", service.pk)).content.decode()

    cells = re.findall(r'<td class="field-health">(.*?)</td>', page, re.S)
    saved, blank = cells[0], cells[1]  # the saved target, then the extra blank row
    assert 'alt="False"' in saved
    assert "<img" not in blank
    assert "field-breaker_state" in page  # the per-instance breaker column stays
