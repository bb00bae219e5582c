"""The browsable management API's HTML forms: the same defaults as a JSON body, and a service's
targets entered as JSON text (DRF cannot render nested lists as form fields)."""

from __future__ import annotations

import html
import json
import re

from registry.models import Service, Target

SERVICES = "/api/manage/services/"


def form_post(client, url: str, data: dict):
    """What a browser sends for the HTML form: multipart fields, only ticked boxes present."""
    return client.post(url, data, format="multipart", HTTP_ACCEPT="application/json")


def base_fields(**extra) -> dict:
    return {"name": "Billing", "slug": "billing", "path_prefix": "/api/v1/billing",
            "auth_required": "true", "enabled": "true", **extra}  # fmt: skip


def test_the_create_form_ticks_auth_required_and_enabled(staff_client):
    page = staff_client.get(SERVICES, HTTP_ACCEPT="text/html").content.decode()
    form = page[page.index('id="post-object-form"') :]

    for name in ("auth_required", "enabled"):
        assert re.search(rf'<input type="checkbox" name="{name}" value="true"\s+checked>', form)
    assert not re.search(r'name="websocket_enabled" value="true"\s+checked', form)
    assert re.search(r'<textarea name="targets"[^>]*>\[\]</textarea>', form)


def test_targets_posted_as_json_text_are_created(staff_client):
    targets = [{"url": "http://10.1.2.3:8080", "weight": 5}, {"url": "http://10.1.2.4:8080"}]

    response = form_post(staff_client, SERVICES, base_fields(targets=json.dumps(targets)))

    assert response.status_code == 201, response.json()
    service = Service.objects.get(slug="billing")
    assert [(t.url, t.weight) for t in service.targets.order_by("url")] == [
        ("http://10.1.2.3:8080", 5),
        ("http://10.1.2.4:8080", 100),
    ]


def test_targets_text_that_is_not_json_is_a_field_error_and_saves_nothing(staff_client):
    response = form_post(staff_client, SERVICES, base_fields(targets="[{url: oops}"))

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    (message,) = response.json()["errors"]["targets"]["non_field_errors"]
    assert message.startswith("Send the targets as a JSON list")
    assert not Service.objects.filter(slug="billing").exists()


def test_the_edit_form_holds_the_targets_as_json_and_posts_back_unchanged(staff_client, service):
    target = Target.objects.create(service=service, url="http://10.9.9.9:8080", weight=7)
    url = f"{SERVICES}{service.pk}/"

    page = staff_client.get(url, HTTP_ACCEPT="text/html").content.decode()
    text = re.search(r'<textarea name="targets"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    shown = json.loads(html.unescape(text))
    assert [(t["id"], t["url"], t["weight"]) for t in shown] == [(target.pk, target.url, 7)]

    fields = {"name": "Sales", "slug": "sales", "path_prefix": "/api/v1/sales", "enabled": "true",
              "auth_required": "true", "targets": html.unescape(text)}  # fmt: skip
    response = staff_client.put(url, fields, format="multipart", HTTP_ACCEPT="application/json")

    assert response.status_code == 200, response.json()
    assert list(service.targets.values_list("pk", "weight")) == [(target.pk, 7)]
