"""Schemathesis against the management API's OpenAPI document (issue: reliability): requests
generated from /api/schema/ (valid and invalid ones), sent as a staff superuser, must never
cause a 5xx, and every response must carry the documented content type and match the
documented schema.

In process: Django's WSGI handler, driven by Schemathesis' WSGI transport, on the test
database (each operation's test runs in a transaction that is rolled back). The CI form
runs the explicit-examples and fuzzing phases with a few examples per operation; for a
deeper run set SCHEMATHESIS_MAX_EXAMPLES (e.g. 100) and SCHEMATHESIS_COVERAGE=1.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

MANAGEMENT_PATHS = r"^/api/manage/"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))
# The coverage phase (boundary values for every keyword) takes ~2 minutes; opt in.
PHASES = ["examples", "fuzzing"] + (["coverage"] if os.environ.get("SCHEMATHESIS_COVERAGE") else [])
CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
]


def _load_schema():
    """Loaded at collection (Schemathesis parametrizes from it); the document needs no database."""
    from django.core.handlers.wsgi import WSGIHandler

    config = schemathesis.Config()
    config.projects.default.phases.update(phases=PHASES)
    config.projects.default.generation.update(max_examples=MAX_EXAMPLES)
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), config=config)
    return loaded.include(path_regex=MANAGEMENT_PATHS)


schema = _load_schema()


@pytest.fixture
def staff_headers(db):
    """A staff superuser's bearer token; requests keep the test transaction's connection open."""
    from django.core import signals
    from django.db import close_old_connections

    from tests.reliability.conftest import staff_token

    # As django.test.Client does: the handler must not close the connection that holds the
    # test's transaction when a request starts or ends.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield {"Authorization": f"Bearer {staff_token()}"}
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_the_generated_requests_are_authenticated_as_staff(staff_headers):
    # The checks below mean little if every request were refused as anonymous.
    services = schema["/api/manage/services/"]["GET"].Case()
    assert services.call(headers=staff_headers).status_code == 200
    assert services.call().status_code == 401
    assert len(list(schema.get_all_operations())) >= 28


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_management_api_never_5xx_and_matches_its_schema(case, staff_headers):
    case.call_and_validate(headers=staff_headers, checks=CHECKS)


def test_error_responses_are_documented(staff_headers):
    missing = schema["/api/manage/services/{id}/"]["GET"].Case(path_parameters={"id": 999_999})
    response = missing.call(headers=staff_headers)
    assert response.status_code == 404
    missing.validate_response(response, checks=[status_code_conformance])
