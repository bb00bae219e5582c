"""GATEWAY_ROLE and GATEWAY_CONFIG_SOURCE: a misconfigured process refuses to start, saying why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.dataplane.process import BASE_DIR, INHERITED

LOAD_SETTINGS = "import django; django.setup(); print('started')"
SECRET = "role-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def start(**env: str) -> subprocess.CompletedProcess:
    base = {name: os.environ[name] for name in INHERITED if name in os.environ}
    base.update(DJANGO_SETTINGS_MODULE="gateway_project.settings", SECRET_KEY=SECRET, **env)
    return subprocess.run(
        [sys.executable, "-c", LOAD_SETTINGS],
        cwd=BASE_DIR,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GATEWAY_ROLE": "edge"},
            "GATEWAY_ROLE='edge': expected one of traditional, control_plane, data_plane",
        ),
        ({"GATEWAY_ROLE": "data_plane"}, "expected file:///path/gateway.yaml or http(s)://control-plane"),
        (
            {"GATEWAY_ROLE": "data_plane", "GATEWAY_CONFIG_SOURCE": "ftp://cp"},
            "GATEWAY_CONFIG_SOURCE='ftp://cp'",
        ),
        (
            {
                "GATEWAY_ROLE": "data_plane",
                "GATEWAY_CONFIG_SOURCE": "file:///etc/gw.yaml",
                "DATABASE_URL": "sqlite:///x",
            },
            "A data plane has no database: unset DATABASE_URL",
        ),
        (
            {"GATEWAY_ROLE": "data_plane", "GATEWAY_CONFIG_SOURCE": "https://cp.internal"},
            "needs GATEWAY_CLUSTER_TOKEN",
        ),
        ({"GATEWAY_ROLE": "control_plane"}, "A control plane needs GATEWAY_CLUSTER_TOKEN"),
    ],
)
def test_a_misconfigured_role_refuses_to_start_and_says_why(env, message):
    result = start(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_a_data_plane_loads_without_any_database_and_refuses_every_query(tmp_path):
    query = (
        "import django; django.setup();"
        "from registry.models import Service;"
        "from gateway_project.core.no_database.base import NoDatabaseError\n"
        "try:\n    Service.objects.count()\nexcept NoDatabaseError as exc:\n    print('refused:', exc)"
    )
    base = {name: os.environ[name] for name in INHERITED if name in os.environ}
    base.update(
        DJANGO_SETTINGS_MODULE="gateway_project.settings",
        SECRET_KEY=SECRET,
        GATEWAY_VAR_DIR=str(tmp_path),
        GATEWAY_ROLE="data_plane",
        GATEWAY_CONFIG_SOURCE=f"file://{tmp_path}/gateway.yaml",
    )
    result = subprocess.run(
        [sys.executable, "-c", query], cwd=BASE_DIR, env=base, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "refused: This process runs without a database" in result.stdout


def test_an_empty_database_url_counts_as_none_on_a_data_plane(tmp_path):
    result = start(
        GATEWAY_ROLE="data_plane",
        GATEWAY_CONFIG_SOURCE=f"file://{tmp_path}/gateway.yaml",
        GATEWAY_VAR_DIR=str(tmp_path),
        DATABASE_URL="",  # what an orchestrator that cannot unset a variable passes
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"
