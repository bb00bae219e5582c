"""A config document compiles to the same snapshot the database compiles to, with no query."""

from __future__ import annotations

import copy

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from declarative.document import ConfigFileError
from declarative.standalone import compile_document
from proxy.snapshot import compile_snapshot
from tests.declarative.conftest import export_text

pytestmark = pytest.mark.django_db


def service_view(s) -> tuple:
    targets = tuple((t.url, t.weight, t.enabled, t.demo_only) for t in s.targets)
    access = (s.allowed_methods, s.auth_required, s.public_paths, s.read_roles, s.write_roles)
    return (s.slug, access, targets, tuple(t.url for t in s.pool), tuple(s.versions), s.max_body_bytes)


def quota_view(quota) -> tuple | None:
    """A plan's terms without service ids (the file's own ids are not the database's)."""
    if quota is None:
        return None
    return (quota.plan, quota.monthly, quota.policies, len(quota.per_service))


def routing_view(snapshot) -> dict:
    """What routing and policy read, without ids (the file has none)."""
    return {
        "services": {prefix: service_view(s) for prefix, s in snapshot.services_by_prefix.items()},
        "versions": snapshot.version_prefixes,
        "tenants": {
            slug: (
                t.plan,
                t.read_only,
                t.subscription_status,
                t.grace_ends_at,
                t.is_demo,
                quota_view(t.quota),
            )
            for slug, t in snapshot.tenants.items()
        },
        "api_keys": {h: (k.tenant, k.scopes, k.role, k.revoked) for h, k in snapshot.api_keys.items()},
        "policies": sorted(
            (p.name, p.scope, p.limit, p.window_seconds, tuple(sorted(p.plans)))
            for p in snapshot.rate_policies
        ),
        "issuers": sorted(snapshot.identity_providers),
    }


def test_the_demo_file_compiles_to_the_database_snapshot_without_a_query(demo_key):
    # Given the demo registry exported with its API-key hashes (what a data plane gets)
    document = yaml.safe_load(export_text("--include-key-hashes"))
    from_database = compile_snapshot()
    # When the document is compiled on its own
    with CaptureQueriesContext(connection) as queries:
        from_file = compile_document(document, version=7)
    # Then not one query ran and routing, tenants, keys and policies are the same
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert from_file.version == 7 and from_file.loaded
    assert from_file.api_keys, "the demo has API keys"
    assert routing_view(from_file) == routing_view(from_database)
    # and rate policies point at the file's own service ids
    service_ids = {s.id for s in from_file.services}
    assert all(p.service_id in service_ids for p in from_file.rate_policies if p.service_id is not None)


def test_a_bad_value_is_named_by_its_path_in_the_file(demo):
    document = yaml.safe_load(export_text())
    broken = copy.deepcopy(document)
    broken["services"][1]["targets"][0]["url"] = "ftp://10.0.0.5"
    broken["services"][2]["retries"] = 10_000
    with pytest.raises(ConfigFileError) as raised:
        compile_document(broken, version=1)
    paths = {problem.path for problem in raised.value.problems}
    assert paths == {"services[1].targets[0].url", "services[2].retries"}


def test_a_prefix_used_twice_and_an_unknown_reference_are_refused(demo):
    document = yaml.safe_load(export_text())
    broken = copy.deepcopy(document)
    broken["services"][1]["path_prefix"] = broken["services"][0]["path_prefix"]
    broken["rate_policies"][0]["service"] = "no-such-service"
    with pytest.raises(ConfigFileError) as raised:
        compile_document(broken, version=1)
    rules = {(problem.path, problem.rule) for problem in raised.value.problems}
    assert ("services[1].path_prefix", "duplicate") in rules
    assert ("rate_policies[0].service", "unknown_reference") in rules


def test_the_files_plugins_compile_into_the_data_planes_chains_without_a_query(demo):
    # Given: a file whose `plugins` put one service under maintenance, for one tenant only
    document = yaml.safe_load(export_text())
    document["plugins"] = [
        {
            "plugin": "request-termination",
            "service": "sales",
            "tenant": "bakery-madrid",
            "enabled": True,
            "priority": None,
            "config": {"status_code": 503, "message": "Sales is under maintenance."},
        }
    ]
    # When: it is compiled on its own
    with CaptureQueriesContext(connection) as queries:
        snapshot = compile_document(document, version=3)
    # Then: without a query, sales carries the chain for that tenant and no other service does
    assert len(queries) == 0, [q["sql"] for q in queries]
    by_slug = {s.slug: s for s in snapshot.services}
    sales = by_slug["sales"].plugins
    assert sales is not None and sales.base is None and set(sales.by_tenant) == {"bakery-madrid"}
    assert all(s.plugins is None for slug, s in by_slug.items() if slug != "sales")
