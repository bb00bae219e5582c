"""An unknown path under the management API is the NOT_FOUND problem, with DEBUG on (`make run`)
as with DEBUG off: Django's HTML 404 page never reaches an API client."""

from __future__ import annotations

import pytest

from gateway_project.core.problems import PROBLEM_CONTENT_TYPE


@pytest.fixture(params=[True, False], ids=["debug", "production"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize("path", ["/api/manage/no-such-thing", "/api/manage/no/such/thing/"])
def test_an_unknown_management_path_is_a_not_found_problem(client, debug, path):
    response = client.get(path, HTTP_ACCEPT="application/json", HTTP_X_REQUEST_ID="req-404-test")

    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert (body["code"], body["status"], body["instance"]) == ("NOT_FOUND", 404, path)
    assert body["request_id"] == response["X-Request-ID"] == "req-404-test"


def test_staff_get_the_same_problem(staff_client, debug):
    response = staff_client.get("/api/manage/nothing-here/", HTTP_ACCEPT="application/json")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_a_browser_page_outside_the_api_keeps_its_html_404(client, debug):
    response = client.get("/no-such-page/", HTTP_ACCEPT="text/html")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
