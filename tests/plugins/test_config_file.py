"""`plugins` in the configuration file (SPEC sections 18 and 19): exported with natural keys,
applied through the same validators as the admin and API, idempotent."""

from __future__ import annotations

import pytest
import yaml

from tests.declarative.conftest import export_text, gateway_config


@pytest.fixture
def registry(db, tenant):
    from plugins.models import PluginConfig
    from registry.models import Service

    sales = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")
    PluginConfig.objects.create(plugin="mark-one")
    PluginConfig.objects.create(plugin="hello-header", service=sales, config={"greeting": "hola"})
    PluginConfig.objects.create(plugin="mark-two", service=sales, tenant=tenant, priority=7, enabled=False)


def write(tmp_path, document: dict) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=True))
    return str(path)


def test_plugins_are_exported_by_natural_key(registry):
    plugins = yaml.safe_load(export_text())["plugins"]

    assert plugins == [
        {"plugin": "hello-header", "service": "sales", "tenant": None, "config": {"greeting": "hola"},
         "enabled": True, "priority": None},
        {"plugin": "mark-one", "service": None, "tenant": None, "config": {}, "enabled": True,
         "priority": None},
        {"plugin": "mark-two", "service": "sales", "tenant": "acme", "config": {}, "enabled": False,
         "priority": 7},
    ]  # fmt: skip


def test_apply_creates_updates_and_is_idempotent(registry, tmp_path):
    from plugins.models import PluginConfig
    from registry.models import ConfigState

    document = yaml.safe_load(export_text())
    document["plugins"][0]["config"] = {"greeting": "hello"}
    document["plugins"].append({"plugin": "request-termination", "service": "sales", "config": {}})
    path = write(tmp_path, document)

    first = gateway_config("apply", path)
    version = ConfigState.objects.get().version
    second = gateway_config("apply", path)

    assert first.code == 0, first.err
    assert PluginConfig.objects.get(plugin="hello-header").config == {"greeting": "hello"}
    assert PluginConfig.objects.filter(plugin="request-termination", service__slug="sales").exists()
    assert second.code == 0 and ConfigState.objects.get().version == version


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        (lambda p: p[0].update(config={"greeting": 7}), "plugins[0].config", "/greeting: 7 is not"),
        (lambda p: p.append({"plugin": "nope"}), "plugins[3].plugin", "No plugin named 'nope'"),
    ],
    ids=["config-against-schema", "unknown-plugin"],
)
def test_a_bad_plugin_entry_names_its_file_path_and_changes_nothing(registry, tmp_path, edit, where, message):
    from plugins.models import PluginConfig

    document = yaml.safe_load(export_text())
    document["plugins"][1]["enabled"] = False  # a good change that must not land either
    edit(document["plugins"])

    run = gateway_config("apply", write(tmp_path, document))

    assert run.code == 1
    assert f"{where}: " in run.err and message in run.err
    assert PluginConfig.objects.get(plugin="hello-header").config == {"greeting": "hola"}
    assert PluginConfig.objects.get(plugin="mark-one").enabled is True


def test_prune_removes_plugins_the_file_lost(registry, tmp_path):
    from plugins.models import PluginConfig

    document = yaml.safe_load(export_text())
    document["plugins"] = [p for p in document["plugins"] if p["plugin"] != "mark-one"]

    run = gateway_config("apply", "--prune", write(tmp_path, document))

    assert run.code == 0, run.err
    assert "plugins/mark-one" in run.out
    assert not PluginConfig.objects.filter(plugin="mark-one").exists()
    assert PluginConfig.objects.count() == 2
