"""What tests of the Django side share: the problem body every refusal carries, and admin URLs."""

from __future__ import annotations

from django.urls import reverse

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str, instance: str | None = None) -> dict:
    """The response is an RFC 9457 problem with this status and code (and instance, if given)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    if instance is not None:
        assert body["instance"] == instance
    return body


def admin_url(model, view: str, *args) -> str:
    """The admin URL of `model`'s changelist, add, change, delete or history view."""
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)
