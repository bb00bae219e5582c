"""The demo registry as a file, and the means to run `gateway_config` and read what it said."""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from alerts.models import NotificationRule
from registry.models import RatePolicy, Service
from tenancy.models import IdentityProvider, Tenant, User

DEMO_BASE_PORT = 9400


@dataclass
class Run:
    """What a user sees of one `gateway_config` run: exit code and output."""

    code: int
    out: str
    err: str


def gateway_config(*args: str) -> Run:
    out, err = StringIO(), StringIO()
    try:
        call_command("gateway_config", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return Run(exc.returncode, out.getvalue(), str(exc))
    except SystemExit as exc:
        return Run(int(exc.code), out.getvalue(), err.getvalue())
    return Run(0, out.getvalue(), err.getvalue())


def export_text(*args: str) -> str:
    run = gateway_config("export", *args)
    assert run.code == 0, run.err
    return run.out


def empty_registry() -> None:
    """Everything the file describes gone, as in a fresh database; staff stay (not in the file)."""
    User.objects.exclude(tenant=None).delete()  # a tenant's users hold it (PROTECT)
    for model in (NotificationRule, IdentityProvider, RatePolicy, Service, Tenant):
        model.objects.all().delete()


@pytest.fixture
def demo(db, monkeypatch):
    monkeypatch.setenv("DEMO_UPSTREAM_HOST", "127.0.0.1")
    monkeypatch.setenv("DEMO_UPSTREAM_BASE_PORT", str(DEMO_BASE_PORT))
    call_command("load_demo", stdout=StringIO())


@pytest.fixture
def demo_file(demo, tmp_path):
    """Write a (possibly edited) copy of the demo export; returns (document, write)."""
    document = yaml.safe_load(export_text())

    def write(doc: dict, name: str = "gateway.yaml") -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc, sort_keys=True))
        return str(path)

    return document, write
