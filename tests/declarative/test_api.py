"""The same file through /api/manage/config/: export, diff, apply, schema; staff only."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml

from registry.config_version import current_config_version
from registry.models import Service
from tests.declarative.conftest import empty_registry, export_text

pytestmark = pytest.mark.django_db

YAML = "application/yaml"


def post_file(client, action: str, document: dict, query: str = "", as_json: bool = False):
    body, content_type = (
        (json.dumps(document), "application/json") if as_json else (yaml.safe_dump(document), YAML)
    )
    return client.generic("POST", f"/api/manage/config/{action}{query}", body, content_type=content_type)


def test_export_is_the_commands_yaml_or_json_on_request(demo, staff_client):
    as_yaml = staff_client.get("/api/manage/config/export")
    assert as_yaml.status_code == 200 and as_yaml["Content-Type"].startswith(YAML)
    assert as_yaml.content.decode() == export_text()

    as_json = staff_client.get("/api/manage/config/export", HTTP_ACCEPT="application/json")
    assert as_json["Content-Type"].startswith("application/json")
    assert json.loads(as_json.content) == yaml.safe_load(export_text())


def test_an_unknown_format_is_a_400_problem_naming_the_formats(demo, staff_client):
    response = staff_client.get("/api/manage/config/export?format=toml")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"]["format"] == ["Unknown format; use one of: json, yaml."]
    assert staff_client.get("/api/manage/config/export?format=json").json()["_format_version"] == "1"


def test_the_published_schema_accepts_an_export_and_names_the_format(demo, staff_client):
    response = staff_client.get("/api/manage/config/schema")
    assert response.status_code == 200
    schema = response.json()
    assert schema["properties"]["_format_version"] == {"const": "1"}
    jsonschema.validate(yaml.safe_load(export_text()), schema)


def test_diff_and_apply_answer_created_updated_deleted(demo, staff_client):
    document = yaml.safe_load(export_text())
    edited = copy.deepcopy(document)
    edited["services"] = [s for s in edited["services"] if s["slug"] != "orders"]
    edited["rate_policies"][0]["limit"] = 100

    diff = post_file(staff_client, "diff", edited, "?prune=1", as_json=True)
    assert diff.status_code == 200
    assert diff.json() == {
        "created": [],
        "updated": ["rate_policies/client-minute"],
        "deleted": ["services/orders"],
    }
    assert Service.objects.filter(slug="orders").exists()

    version = current_config_version()
    applied = post_file(staff_client, "apply", edited, "?prune=1")
    assert applied.json() == diff.json()
    assert not Service.objects.filter(slug="orders").exists()
    assert current_config_version() == version + 1

    again = post_file(staff_client, "apply", edited, "?prune=1")
    assert again.json() == {"created": [], "updated": [], "deleted": []}
    assert current_config_version() == version + 1


def test_apply_to_an_empty_registry_round_trips(demo, staff_client):
    exported = staff_client.get("/api/manage/config/export").content
    empty_registry()
    response = staff_client.generic("POST", "/api/manage/config/apply", exported, content_type=YAML)
    assert response.status_code == 200 and "services/sales" in response.json()["created"]
    assert export_text().encode() == exported


def test_dry_run_changes_nothing(demo, staff_client):
    document = yaml.safe_load(export_text())
    document["tenants"][0]["read_only"] = True
    before = export_text()

    response = post_file(staff_client, "apply", document, "?dry_run=1")

    assert response.json()["updated"] == ["tenants/bakery-demo"]
    assert export_text() == before


def test_a_bad_value_is_a_400_problem_naming_its_path(demo, staff_client):
    document = yaml.safe_load(export_text())
    document["services"][0]["description"] = "changed"
    document["services"][2]["targets"][0]["url"] = "http://169.254.169.254/"
    before = export_text()

    response = post_file(staff_client, "apply", document)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert list(body["errors"]) == ["services[2].targets[0].url"]
    assert export_text() == before


def test_a_body_that_is_not_yaml_is_a_400(demo, staff_client):
    response = staff_client.generic("POST", "/api/manage/config/diff", "services: [", content_type=YAML)
    assert response.status_code == 400 and "_file" in response.json()["errors"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "export"), ("get", "schema"), ("post", "diff"), ("post", "apply")],
)
def test_only_staff_may_use_the_config_endpoints(member_client, client, method, path):
    url = f"/api/manage/config/{path}"
    assert getattr(member_client, method)(url).status_code == 403
    assert getattr(client, method)(url).status_code == 401
