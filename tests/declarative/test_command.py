"""`manage.py gateway_config export|diff|apply` as an operator uses it (SPEC section 18)."""

from __future__ import annotations

import copy

import pytest
import yaml

from registry.config_version import current_config_version
from registry.models import Service, Target
from tenancy.models import AuditEvent, IdentityProvider, Tenant
from tests.declarative.conftest import empty_registry, export_text, gateway_config

pytestmark = pytest.mark.django_db

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def services_by_slug(document: dict) -> dict:
    return {service["slug"]: service for service in document["services"]}


def test_round_trip_of_the_demo_registry_is_byte_identical(demo, tmp_path):
    # Given the demo registry exported to a file
    path = tmp_path / "gateway.yaml"
    assert gateway_config("export", "-o", str(path)).code == EXIT_OK
    exported = path.read_text()
    # When it is applied to an empty registry and exported again
    empty_registry()
    applied = gateway_config("apply", str(path))
    # Then every object was created and the second export is the same bytes
    assert applied.code == EXIT_OK, applied.err
    assert "+ services/sales" in applied.out and "+ tenants/bakery-madrid" in applied.out
    assert export_text() == exported


def test_the_file_has_natural_keys_no_ids_and_no_user_data(demo):
    text = export_text()
    document = yaml.safe_load(text)
    assert document["_format_version"] == "1"
    assert "users" not in document and "id" not in text.split() and "password" not in text
    sales = services_by_slug(document)["sales"]
    assert "id" not in sales and sales["targets"][0]["url"].startswith("http://127.0.0.1:")
    assert all("api_keys" not in tenant for tenant in document["tenants"])


def test_a_second_apply_changes_nothing_and_bumps_no_version(demo_file):
    document, write = demo_file
    path = write(document)
    empty_registry()
    before = current_config_version()
    first = gateway_config("apply", path)
    assert first.code == EXIT_OK and first.out.count("\n+ ") > 10
    # One apply is one config version, however many rows it saved
    assert current_config_version() == before + 1
    events = AuditEvent.objects.filter(source="config-file").count()
    assert events > 10

    second = gateway_config("apply", path)

    assert second.code == EXIT_OK
    assert second.out.strip() == "No changes."
    assert current_config_version() == before + 1
    assert AuditEvent.objects.filter(source="config-file").count() == events


def test_one_bad_value_among_many_changes_nothing_and_names_its_path(demo_file):
    document, write = demo_file
    edited = copy.deepcopy(document)
    edited["services"][0]["read_timeout"] = 12.5  # a good change that must not land
    edited["services"][2]["targets"][0]["url"] = "ftp://10.0.0.5/"
    before, version = export_text(), current_config_version()

    run = gateway_config("apply", write(edited))

    assert run.code == EXIT_ERROR
    assert "services[2].targets[0].url" in run.err and "nothing changed" in run.err
    assert export_text() == before
    assert current_config_version() == version


def test_a_value_of_the_wrong_shape_is_refused_by_the_schema_with_its_path(demo_file):
    document, write = demo_file
    document["services"][1]["retries"] = "three"
    document["tenants"][0]["colour"] = "blue"

    run = gateway_config("apply", write(document))

    assert run.code == EXIT_ERROR
    assert "services[1].retries: 'three' is not of type 'integer' [type]" in run.err
    assert "tenants[0]: Additional properties are not allowed ('colour' was unexpected)" in run.err


def test_a_model_rule_is_named_with_its_path(demo_file):
    document, write = demo_file
    document["rate_policies"][0]["burst"] = 5  # burst is for GCRA only: the model's clean() says so

    run = gateway_config("diff", write(document))

    assert run.code == EXIT_ERROR
    assert "rate_policies[0].burst: Burst applies to the GCRA algorithm only." in run.err


def test_diff_after_an_admin_change_shows_exactly_that_field(demo_file, staff_client):
    document, write = demo_file
    sales = Service.objects.get(slug="sales")
    response = staff_client.patch(f"/api/manage/services/{sales.pk}/", {"read_timeout": 12.5}, format="json")
    assert response.status_code == 200

    run = gateway_config("diff", write(document))

    assert run.code == EXIT_CHANGES
    assert run.out.splitlines() == [
        "~ services/sales",
        "    read_timeout: 12.5 -> 30.0",
        "Would change: 0 created, 1 updated, 0 deleted (nothing was changed).",
    ]
    assert Service.objects.get(slug="sales").read_timeout == 12.5


def test_diff_of_an_unchanged_registry_exits_zero(demo_file):
    document, write = demo_file
    run = gateway_config("diff", write(document))
    assert (run.code, run.out.strip()) == (EXIT_OK, "No changes.")


def test_apply_without_prune_deletes_nothing_and_with_prune_removes_what_the_file_lost(demo_file):
    document, write = demo_file
    document["services"] = [s for s in document["services"] if s["slug"] != "orders"]
    services_by_slug(document)["sales"]["targets"] = []
    document["tenants"] = [t for t in document["tenants"] if t["slug"] != "bakery-demo"]
    path = write(document)

    assert gateway_config("apply", path).out.strip() == "No changes."
    run = gateway_config("apply", path, "--prune")

    assert run.code == EXIT_OK
    assert "- services/orders" in run.out and "- targets/sales/http://127.0.0.1:9401" in run.out
    assert not Service.objects.filter(slug="orders").exists()
    assert not Target.objects.filter(service__slug="sales").exists()
    # Tenants are data: only --prune-tenants deletes them
    assert Tenant.objects.filter(slug="bakery-demo").exists()
    run = gateway_config("apply", path, "--prune", "--prune-tenants")
    assert run.out.splitlines()[0] == "- tenants/bakery-demo"
    assert not Tenant.objects.filter(slug="bakery-demo").exists()


def test_dry_run_reports_and_changes_nothing(demo_file):
    document, write = demo_file
    services_by_slug(document)["inventory"]["enabled"] = False
    document["services"] = [s for s in document["services"] if s["slug"] != "training"]
    before, version = export_text(), current_config_version()

    run = gateway_config("apply", write(document), "--prune", "--dry-run")

    assert run.code == EXIT_OK
    assert "~ services/inventory" in run.out and "- services/training" in run.out
    assert export_text() == before
    assert current_config_version() == version


def test_secrets_are_references_resolved_from_the_environment(demo_file, monkeypatch):
    document, write = demo_file
    IdentityProvider.objects.create(
        name="okta", issuer="https://idp.example", jwks_url="https://10.0.0.7/jwks", client_secret="s3cr3t"
    )
    text = export_text()
    assert "s3cr3t" not in text and "client_secret: ${IDENTITY_PROVIDERS_OKTA_CLIENT_SECRET}" in text
    path = write(yaml.safe_load(text))

    missing = gateway_config("apply", path)
    assert missing.code == EXIT_ERROR
    assert "identity_providers[0].client_secret" in missing.err and "is not set" in missing.err

    monkeypatch.setenv("IDENTITY_PROVIDERS_OKTA_CLIENT_SECRET", "s3cr3t")
    assert gateway_config("apply", path).out.strip() == "No changes."
    monkeypatch.setenv("IDENTITY_PROVIDERS_OKTA_CLIENT_SECRET", "rotated")
    rotated = gateway_config("apply", path)
    assert "~ identity_providers/okta" in rotated.out and "rotated" not in rotated.out
    assert IdentityProvider.objects.get(name="okta").client_secret == "rotated"


def test_a_secret_written_in_clear_is_refused(demo_file):
    document, write = demo_file
    document["identity_providers"] = [
        {"name": "okta", "issuer": "https://idp.example", "client_secret": "plain"}
    ]
    run = gateway_config("apply", write(document))
    assert run.code == EXIT_ERROR and "identity_providers[0].client_secret" in run.err


def test_api_keys_appear_only_as_hashes_and_only_when_asked(demo, tenant):
    from registry.models import ApiKey

    key = ApiKey(tenant=tenant, name="ci-robot", scopes=["read"])
    secret = key.assign_new_secret()
    key.save()

    assert key.key_hash not in export_text()
    text = export_text("--include-key-hashes")
    assert key.key_hash in text and secret not in text


def test_a_missing_file_is_an_error(tmp_path):
    run = gateway_config("diff", str(tmp_path / "absent.yaml"))
    assert run.code == EXIT_ERROR and "Cannot read" in run.err


def test_key_hashes_round_trip_for_a_db_less_data_plane(demo, tenant, tmp_path):
    from registry.models import ApiKey

    key = ApiKey(tenant=tenant, name="ci-robot", scopes=["read", "write"])
    key.assign_new_secret()
    key.save()
    path = tmp_path / "with-keys.yaml"
    gateway_config("export", "--include-key-hashes", "-o", str(path))
    empty_registry()

    assert gateway_config("apply", str(path)).code == EXIT_OK

    assert ApiKey.objects.get(tenant__slug="acme").key_hash == key.key_hash
    assert export_text("--include-key-hashes") == path.read_text()


def test_yaml_aliases_are_refused(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text('_format_version: "1"\na: &a ["x", "x"]\nb: [*a, *a]\n')
    run = gateway_config("apply", str(path))
    assert run.code == EXIT_ERROR and "aliases" in run.err
