"""Incremental snapshot updates (SPEC section 23): a change is applied as a delta that equals
a full rebuild, costs queries in proportion to the change, and shares what it did not touch."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from proxy.snapshot import Snapshot, compile_snapshot
from proxy.snapshot_delta import SnapshotUpdater
from registry.config_version import current_config_version

FUZZ_OPERATIONS = 300
SEED = 20261206


def assert_same_snapshot(delta: Snapshot, full: Snapshot) -> None:
    """Every field equal (the build time aside), table by table for a readable failure."""
    assert delta.version == full.version
    for field in dataclasses.fields(Snapshot):
        if field.name == "built_at":
            continue
        mine, theirs = getattr(delta, field.name), getattr(full, field.name)
        if isinstance(theirs, dict):
            assert set(mine) == set(theirs), field.name
            for key in theirs:
                assert mine[key] == theirs[key], f"{field.name}[{key!r}]"
        assert mine == theirs, field.name


def start(updater: SnapshotUpdater) -> Snapshot:
    update = updater.next(Snapshot(version=-1))
    assert update.full
    return update.snapshot


def advance(updater: SnapshotUpdater, snapshot: Snapshot) -> Snapshot:
    update = updater.next(snapshot)
    assert not update.full, "a logged change must apply as a delta"
    return update.snapshot


class Registry:
    """Random creates, updates and deletes across every model the snapshot reads."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.counter = 0

    def name(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}{self.counter}"

    def url(self) -> str:
        self.counter += 1
        return f"http://127.0.0.1:{9000 + self.counter}"

    def pick(self, model):
        pks = list(model.objects.values_list("pk", flat=True))
        return model.objects.get(pk=self.rng.choice(pks)) if pks else None

    def step(self) -> None:
        operation = self.rng.choice(
            [
                self.new_service,
                self.edit_service,
                self.rename_service,
                self.drop_service,
                self.new_target,
                self.edit_target,
                self.drop_target,
                self.new_version,
                self.drop_version,
                self.new_tenant,
                self.edit_tenant,
                self.rename_tenant,
                self.drop_tenant,
                self.edit_subscription,
                self.drop_subscription,
                self.new_key,
                self.edit_key,
                self.rotate_key,
                self.drop_key,
                self.new_policy,
                self.edit_policy,
                self.drop_policy,
                self.new_provider,
                self.drop_provider,
            ]
        )
        operation()

    # --- services, targets, versions ---------------------------------------------------

    def new_service(self) -> None:
        from registry.models import Service, Target

        slug = self.name("svc")
        version = self.rng.choice(["1", "2", "3"])
        with transaction.atomic():  # one save in the admin: the service and its target
            service = Service.objects.create(name=slug, slug=slug, path_prefix=f"/api/v{version}/{slug}")
            Target.objects.create(service=service, url=self.url())

    def edit_service(self) -> None:
        from registry.models import Service

        if (service := self.pick(Service)) is None:
            return
        service.enabled = not service.enabled
        service.read_roles = self.rng.choice([[], ["admin"], ["staff", "admin"]])
        service.ip_deny = self.rng.choice([[], ["10.0.0.0/8"]])
        service.save()

    def rename_service(self) -> None:
        """A new prefix (sometimes another version's prefix of the same name: aliases move)."""
        from registry.models import Service

        if (service := self.pick(Service)) is None:
            return
        rest = service.path_prefix.split("/", 3)[3]
        if self.rng.random() < 0.5:
            rest = self.name("moved")
        prefix = f"/api/v{self.rng.choice(['1', '2', '3'])}/{rest}"
        if not Service.objects.filter(path_prefix=prefix).exists():
            service.path_prefix = prefix
            service.save()

    def drop_service(self) -> None:
        from registry.models import Service

        if (service := self.pick(Service)) is not None:
            service.delete()

    def new_target(self) -> None:
        from registry.models import Service, Target

        if (service := self.pick(Service)) is not None:
            Target.objects.create(
                service=service,
                url=self.url(),
                version=self.rng.choice(["", "2"]),
                demo_only=self.rng.random() < 0.2,
            )

    def edit_target(self) -> None:
        from registry.models import Target

        if (target := self.pick(Target)) is None:
            return
        target.healthy = not target.healthy
        target.weight = self.rng.choice([0, 50, 100])
        if self.rng.random() < 0.3:
            target.breaker_reset_at = timezone.now()
        target.save()

    def drop_target(self) -> None:
        from registry.models import Target

        if (target := self.pick(Target)) is not None:
            target.delete()

    def new_version(self) -> None:
        from registry.models import Service, ServiceVersion

        service = self.pick(Service)
        version = self.rng.choice(["1", "2", "3", "4"])
        if service is not None and not service.versions.filter(version=version).exists():
            deprecated = self.rng.random() < 0.5
            ServiceVersion.objects.create(service=service, version=version, deprecated=deprecated)

    def drop_version(self) -> None:
        from registry.models import ServiceVersion

        if (version := self.pick(ServiceVersion)) is not None:
            version.delete()

    # --- tenants and subscriptions --------------------------------------------------------

    def new_tenant(self) -> None:
        from tenancy.models import Subscription, Tenant

        slug = self.name("tenant")
        with transaction.atomic():
            tenant = Tenant.objects.create(name=slug, slug=slug)
            if self.rng.random() < 0.8:
                Subscription.objects.create(
                    tenant=tenant, current_period_end=timezone.now() + timedelta(days=30)
                )

    def edit_tenant(self) -> None:
        from tenancy.models import Tenant

        if (tenant := self.pick(Tenant)) is None:
            return
        tenant.read_only = not tenant.read_only
        tenant.read_only_reason = "audit" if tenant.read_only else ""
        tenant.plan = self.rng.choice(["free", "standard", "enterprise"])
        tenant.ip_allow = self.rng.choice([[], ["192.0.2.0/24"]])
        tenant.save()

    def rename_tenant(self) -> None:
        from tenancy.models import Tenant

        if (tenant := self.pick(Tenant)) is not None:
            tenant.slug = self.name("renamed")
            tenant.save()

    def drop_tenant(self) -> None:
        from tenancy.models import Tenant

        if (tenant := self.pick(Tenant)) is not None and not tenant.users.exists():
            tenant.delete()

    def edit_subscription(self) -> None:
        from tenancy.models import Subscription

        if (subscription := self.pick(Subscription)) is None:
            return
        subscription.status = self.rng.choice(["active", "past_due", "canceled"])
        subscription.current_period_end = timezone.now() + timedelta(days=self.rng.randint(-20, 20))
        subscription.save()

    def drop_subscription(self) -> None:
        from tenancy.models import Subscription

        if (subscription := self.pick(Subscription)) is not None:
            subscription.delete()

    # --- API keys --------------------------------------------------------------------------

    def new_key(self) -> None:
        from registry.models import ApiKey
        from tenancy.models import Tenant

        if (tenant := self.pick(Tenant)) is None:
            return
        key = ApiKey(tenant=tenant, name=self.name("key"), scopes=["read"])
        key.assign_new_secret()
        key.save()

    def edit_key(self) -> None:
        from registry.models import ApiKey

        if (key := self.pick(ApiKey)) is None:
            return
        key.revoked = not key.revoked
        key.scopes = self.rng.choice([["read"], ["read", "write"], []])
        key.role = self.rng.choice(["viewer", "member", "admin"])
        key.save()

    def rotate_key(self) -> None:
        from registry.models import ApiKey

        if (key := self.pick(ApiKey)) is not None:
            key.assign_new_secret()
            key.save()

    def drop_key(self) -> None:
        from registry.models import ApiKey

        if (key := self.pick(ApiKey)) is not None:
            key.delete()

    # --- rate policies and identity providers ---------------------------------------------

    def new_policy(self) -> None:
        from registry.models import RatePolicy, Service

        RatePolicy.objects.create(
            name=self.name("policy"),
            service=self.pick(Service) if self.rng.random() < 0.5 else None,
            limit=self.rng.randint(1, 100),
            window_seconds=60,
        )

    def edit_policy(self) -> None:
        from registry.models import RatePolicy

        if (policy := self.pick(RatePolicy)) is None:
            return
        policy.enabled = not policy.enabled
        policy.limit = self.rng.randint(1, 100)
        policy.save()

    def drop_policy(self) -> None:
        from registry.models import RatePolicy

        if (policy := self.pick(RatePolicy)) is not None:
            policy.delete()

    def new_provider(self) -> None:
        from tenancy.models import IdentityProvider, Tenant

        name = self.name("idp")
        IdentityProvider.objects.create(
            name=name,
            issuer=f"https://{name}.example",
            jwks_url=f"https://{name}.example/jwks",
            default_tenant=self.pick(Tenant) if self.rng.random() < 0.7 else None,
        )

    def drop_provider(self) -> None:
        from tenancy.models import IdentityProvider

        if (provider := self.pick(IdentityProvider)) is not None:
            provider.delete()


@pytest.mark.django_db
def test_random_changes_applied_as_deltas_equal_a_full_rebuild():
    rng = random.Random(SEED)
    registry = Registry(rng)
    for _ in range(12):  # a starting registry of every kind
        for make in (registry.new_service, registry.new_tenant, registry.new_key, registry.new_policy):
            make()
    registry.new_provider()
    updater = SnapshotUpdater()
    snapshot = start(updater)

    # When: a few hundred random creates, updates and deletes, applied in random batches.
    done = 0
    while done < FUZZ_OPERATIONS:
        for _ in range(rng.randint(1, 4)):
            registry.step()
            done += 1
        snapshot = advance(updater, snapshot)
        if done % 50 < 4:
            assert_same_snapshot(snapshot, compile_snapshot())

    # Then: the snapshot the deltas built is the one a full rebuild reads from the database.
    assert_same_snapshot(snapshot, compile_snapshot())
    assert snapshot.version > FUZZ_OPERATIONS  # every operation moved the version at least once


# --- what one change costs -------------------------------------------------------------------


def toggle_read_only() -> None:
    from tenancy.models import Tenant

    tenant = Tenant.objects.order_by("pk").first()
    tenant.read_only, tenant.read_only_reason = True, "migration"
    tenant.save()


def new_api_key() -> None:
    from registry.models import ApiKey
    from tenancy.models import Tenant

    key = ApiKey(tenant=Tenant.objects.order_by("pk").first(), name="fresh", scopes=["read"])
    key.assign_new_secret()
    key.save()


def delete_api_key() -> None:
    from registry.models import ApiKey

    ApiKey.objects.order_by("pk").first().delete()


def new_service() -> None:
    from registry.models import Service, Target

    with transaction.atomic():
        service = Service.objects.create(name="Fresh", slug="fresh", path_prefix="/api/v1/fresh")
        Target.objects.create(service=service, url="http://127.0.0.1:9")


CHANGES = {
    # change -> database queries an instance makes to apply it: the change rows, then the object
    "read-only toggle": (toggle_read_only, 2),
    "new API key": (new_api_key, 2),
    "deleted API key": (delete_api_key, 2),
    "new service": (new_service, 5),  # the service, its targets, its versions, plugins reaching it
}


@pytest.mark.django_db
@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("size", [(5, 5, 20), (400, 100, 3_000)], ids=["small", "large"])
def test_queries_per_change_are_bounded_by_the_change_not_the_registry(change, size):
    from bench.scale_registry import ScaleSize, grow_registry

    grow_registry(ScaleSize(*size), "http://127.0.0.1:9")
    updater = SnapshotUpdater()
    before = start(updater)
    make_change, expected_queries = CHANGES[change]

    make_change()
    announced = current_config_version()  # the watcher reads it from Redis
    with CaptureQueriesContext(connection) as queries:
        update = updater.next(before, newest=announced)

    assert not update.full
    assert len(queries) == expected_queries, [q["sql"][:120] for q in queries]
    assert_same_snapshot(update.snapshot, compile_snapshot())


@pytest.mark.django_db
def test_a_delta_shares_every_table_and_entry_it_did_not_change():
    from bench.scale_registry import ScaleSize, grow_registry

    grow_registry(ScaleSize(20, 10, 50), "http://127.0.0.1:9")
    updater = SnapshotUpdater()
    before = start(updater)

    new_api_key()
    after = advance(updater, before)

    assert after.services_by_prefix is before.services_by_prefix
    assert after.tenants is before.tenants and after.rate_policies is before.rate_policies
    assert after.api_keys is not before.api_keys and len(after.api_keys) == len(before.api_keys) + 1
    assert all(after.api_keys[key_hash] is entry for key_hash, entry in before.api_keys.items())
    copied = [
        new for new, old in zip(after.api_keys.shards, before.api_keys.shards, strict=True) if new is not old
    ]
    assert len(copied) == 1  # the key's shard; the other 255 are shared


# --- when the log cannot be trusted ---------------------------------------------------------


@pytest.mark.django_db
def test_a_folded_declarative_apply_is_one_version_applied_as_one_delta():
    from bench.scale_registry import ScaleSize, grow_registry
    from registry.config_version import fold_versions_since

    grow_registry(ScaleSize(20, 10, 50), "http://127.0.0.1:9")
    updater = SnapshotUpdater()
    before = start(updater)

    with transaction.atomic():  # what `gateway_config apply` does with its saves
        version = current_config_version()
        toggle_read_only()
        new_api_key()
        new_service()
        fold_versions_since(version)
    update = updater.next(before)

    assert not update.full and update.snapshot.version == version + 1
    assert_same_snapshot(update.snapshot, compile_snapshot())


@pytest.mark.django_db
@pytest.mark.parametrize("gap", ["bump without rows", "rows pruned", "change of kind all"])
def test_a_log_that_cannot_be_trusted_falls_back_to_a_full_rebuild(gap):
    from django.db.models import F

    from bench.scale_registry import ScaleSize, grow_registry
    from registry.config_version import bump_config_version
    from registry.models import ConfigChange, ConfigState

    grow_registry(ScaleSize(20, 10, 50), "http://127.0.0.1:9")
    updater = SnapshotUpdater()
    before = start(updater)

    new_api_key()
    if gap == "bump without rows":
        toggle_read_only()
        ConfigState.objects.update(version=F("version") + 1)
    elif gap == "rows pruned":
        toggle_read_only()
        ConfigChange.objects.filter(version=before.version + 1).delete()
    else:
        bump_config_version()  # bulk inserts, or a model without a delta handler
    update = updater.next(before)

    assert update.full
    assert_same_snapshot(update.snapshot, compile_snapshot())
    assert len(update.snapshot.api_keys) == len(before.api_keys) + 1


# --- installing a large snapshot on the event loop ------------------------------------------


@pytest.mark.django_db
def test_a_large_full_install_applies_gauges_in_slices_between_loop_turns(monkeypatch):
    import asyncio

    from prometheus_client import REGISTRY

    from bench.scale_registry import ScaleSize, grow_registry
    from proxy.runtime import Runtime
    from registry.models import Target

    monkeypatch.setattr("proxy.runtime.INSTALL_SLICE_SERVICES", 10)
    grow_registry(ScaleSize(45, 5, 5), "http://127.0.0.1:9")
    Target.objects.filter(service__slug="scale-s44").update(healthy=False)
    update = SnapshotUpdater().next(Snapshot(version=-1))
    last = update.snapshot.services_by_prefix["/api/v1/scale-s44"]

    def health_gauge():
        labels = {"service": last.slug, "target": last.targets[0].label}
        return REGISTRY.get_sample_value("gateway_service_health", labels)

    async def install() -> tuple[bool, int]:
        runtime = Runtime()
        runtime.install_update(update)
        pending = runtime._installing is not None  # the slices run on later loop turns
        turns = 0
        while runtime._installing is not None:
            await asyncio.sleep(0)
            turns += 1
        return pending, turns

    pending, turns = asyncio.run(install())

    assert pending and turns >= 5  # install() returned first; 45 services took 5 slices
    assert health_gauge() == 0  # the last slice ran: the unhealthy target's gauge says so


@pytest.mark.django_db
def test_deltas_keep_a_services_plugin_chain_and_a_tenants_plan_quota():
    """What other features add to an entry survives a delta of that entry."""
    from plugins.models import PluginConfig
    from registry.models import Service
    from tenancy.models import Plan, Subscription, Tenant

    service = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")
    PluginConfig.objects.create(
        plugin="request-termination", service=service, config={"status_code": 503, "message": "Down."}
    )
    plan = Plan.objects.create(name="starter", monthly_request_quota=1000)
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    Subscription.objects.create(
        tenant=tenant, plan=plan, current_period_end=timezone.now() + timedelta(days=30)
    )
    updater = SnapshotUpdater()
    snapshot = start(updater)
    assert snapshot.services_by_prefix["/api/v1/sales"].plugins is not None

    # When: the service and the tenant change (each applied as a delta)
    service.description = "changed"
    service.save()
    tenant.read_only = True
    tenant.save()
    snapshot = advance(updater, snapshot)

    # Then: the chain and the quota are still there, as a full rebuild has them (plugin
    # instances are new at each compile, so chains compare by the plugins they run)
    full = compile_snapshot()
    chain = snapshot.services_by_prefix["/api/v1/sales"].plugins.base
    assert [p.name for p in chain.access] == ["request-termination"]
    assert [p.name for p in chain.access] == [
        p.name for p in full.services_by_prefix["/api/v1/sales"].plugins.base.access
    ]
    assert snapshot.tenants["acme"].quota is not None and snapshot.tenants["acme"].read_only
    assert snapshot.tenants["acme"] == full.tenants["acme"]
