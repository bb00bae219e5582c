"""Fixtures for plugins: the example package installed with `pip install -e` for the session
(entry-point discovery), the sample plugins of `sample_plugins` by dotted path, and the data
plane's fixtures (a recording upstream on loopback, services, a live gateway)."""

from __future__ import annotations

import importlib.metadata
import json
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.proxy.conftest import (  # noqa: F401 - the data plane's fixtures, reused
    bearer,
    gateway,
    make_service,
    make_tenant,
    make_user,
    upstream,
)
from tests.proxy.test_snapshot import query_log  # noqa: F401 - the SQL log fixture, reused

EXAMPLE_DISTRIBUTION = "gateway-hello-plugin"
EXAMPLE_PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "gateway-hello-plugin"
SAMPLES = "tests.plugins.sample_plugins"
SAMPLE_PLUGINS = [
    f"{SAMPLES}.{name}"
    for name in (
        "MarkOne",
        "MarkTwo",
        "MarkThree",
        "Explode",
        "Sleepy",
        "ExplodeOnResponse",
        "SpoofRequestId",
        "Recorder",
        "RefuseUnlessTagged",
        "BadAnswer",
        "Exits",
        "NoHooks",
        "BadSchema",
    )
] + ["tests.plugins.no_such_module.Plugin"]


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, timeout=120)


@pytest.fixture(scope="session")
def example_package():
    """`pip install -e examples/gateway-hello-plugin`, as an operator would (no index needed),
    made importable in this running interpreter (its .pth is read at startup otherwise).

    Left installed, and not reinstalled when present: test sessions of other checkouts may
    share this environment, and removing or replacing the package under one of them would
    hide the entry point from its discovery halfway through.
    """
    if not _installed_from_an_existing_checkout():
        _pip("install", "-e", str(EXAMPLE_PACKAGE), "--no-deps", "--no-build-isolation", "--no-index")
    site.addsitedir(sysconfig.get_paths()["purelib"])


def _installed_from_an_existing_checkout() -> bool:
    """Installed, and its editable source still exists (a checkout since removed leaves an
    entry point whose module no longer imports)."""
    try:
        distribution = importlib.metadata.distribution(EXAMPLE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    location = json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "")
    return not location.startswith("file://") or Path(location.removeprefix("file://")).is_dir()


@pytest.fixture(autouse=True)
def plugin_catalogue(settings, example_package):
    """This process's plugins: built-ins, the example package, the sample plugins."""
    from plugins.discovery import reload_catalogue

    settings.GATEWAY_PLUGINS = SAMPLE_PLUGINS
    yield reload_catalogue()
    from plugins.discovery import catalogue

    catalogue.cache_clear()


@pytest.fixture
def configure(staff_client):
    """POST a plugin config through the management API; returns the created object."""

    def make(plugin: str, service: str | None = None, tenant: str | None = None, **fields) -> dict:
        body = {"plugin": plugin, "service": service, "tenant": tenant, **fields}
        response = staff_client.post("/api/manage/plugins/", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    return make
