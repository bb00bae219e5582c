"""`make run`'s console format (LOG_FORMAT=console): one readable, masked line per record."""

import os
import subprocess
import sys
from pathlib import Path

from gateway_project.logs import ConsoleFormatter
from tests.proxy.test_log_masking import django_not_found_record
from tests.test_devrun import CONSOLE_RECORD

BASE_DIR = Path(__file__).resolve().parent.parent
EMAIL = "ana@example.com"


def test_a_record_is_one_line_with_its_fields_masked(rf):
    request = rf.get(f"/api/manage/users/{EMAIL}/")
    record = django_not_found_record(
        request,
        {
            "authorization": "Bearer abc.def.ghi",
            "note": f"mail {EMAIL}",
            "color_message": "\x1b[31mNot Found\x1b[0m",
        },
    )

    line = ConsoleFormatter().format(record)

    assert CONSOLE_RECORD.match(line), line
    assert "\n" not in line and EMAIL not in line and "abc.def.ghi" not in line
    assert line.endswith(
        'django.request  Not Found: /api/manage/users/***/  request="GET /api/manage/users/***/" '
        'status_code=404 authorization=*** note="mail ***"'
    )
    assert "color_message" not in line


def test_an_unknown_log_format_stops_the_start_with_a_clear_message():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="gateway_project.settings", LOG_FORMAT="pretty")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "LOG_FORMAT='pretty': expected one of json, console" in result.stderr
