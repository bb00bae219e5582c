"""Log masking (SPEC sections 10 and 14): secrets and personal data never leave the process
in a log line, neither in the access log nor in the application log.
"""

import json
import logging
import subprocess

import httpx
import pytest

from gateway_project.core.masking import mask_path, mask_query, mask_text, mask_url
from gateway_project.logs import JsonFormatter
from tests.live import GatewayProcess, wait_until

TOKEN = "tok-9f8e7d6c5b4a"
EMAIL = "jane.doe@example.com"
CARD = "4111111111111111"  # a Visa test number: passes the Luhn check
SPACED_CARD = "5500 0000 0000 0004"
BEARER = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlLXZhbHVl"
SECRETS = (TOKEN, EMAIL, "jane.doe%40example.com", CARD, "5500", "eyJhbGciOiJSUzI1NiJ9", "c2lnbmF0dXJl")
QUERY = {"token": TOKEN, "email": EMAIL, "card": SPACED_CARD, "page": "2"}


def _start_with_captured_output(process: GatewayProcess, out, err) -> GatewayProcess:
    """GatewayProcess.start, with stdout (access log) and stderr (application log) kept."""
    process.process = subprocess.Popen(process.command, env=process.env, stdout=out, stderr=err)

    def ready() -> bool:
        try:
            return httpx.get(f"{process.url}/health/live", timeout=0.5).status_code == 200
        except httpx.TransportError:
            assert process.process.poll() is None, "gateway process exited"
            return False

    wait_until(ready, timeout=20, interval=0.1, message="the gateway process to start")
    return process


@pytest.fixture
def logged_gateway(make_service, upstream, tmp_path):
    make_service("sales", targets=[upstream.url])
    process = GatewayProcess(extra_env={"LOG_LEVEL": "INFO", "ACCESS_LOG": "stdout"})
    out_path, err_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        _start_with_captured_output(process, out, err)
        try:
            yield process, out_path, err_path
        finally:
            process.stop()


def _json_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def test_a_request_full_of_secrets_leaves_no_trace_in_any_log(logged_gateway, upstream):
    gateway, out_path, err_path = logged_gateway
    headers = {"Authorization": BEARER}

    # Given a proxied request and a management-API request carrying a token, an e-mail
    # address, card numbers in path and query, and an Authorization header
    proxied = httpx.get(f"{gateway.url}/api/v1/sales/cards/{CARD}/orders", params=QUERY, headers=headers)
    managed = httpx.get(f"{gateway.url}/api/manage/no-such-thing/{CARD}/", params=QUERY, headers=headers)
    assert proxied.status_code == 200 and managed.status_code in (401, 403, 404)
    assert upstream.hits(f"/cards/{CARD}/orders")[0].headers["authorization"] == BEARER  # forwarded untouched

    # When the gateway has flushed its logs (the access log every 200 ms) and stopped
    wait_until(
        lambda: any(
            line.get("request_id") == proxied.headers["x-request-id"] for line in _json_lines(out_path)
        ),
        timeout=5,
        message="the access log line",
    )
    gateway.stop()
    stdout, stderr = out_path.read_text(), err_path.read_text()

    # Then the lines are there, with the harmless parts of the paths, and no secret at all
    access = next(
        line for line in _json_lines(out_path) if line.get("request_id") == proxied.headers["x-request-id"]
    )
    assert access["path"] == "/api/v1/sales/cards/***/orders"
    application = [line for line in _json_lines(err_path) if "no-such-thing" in json.dumps(line)]
    assert application, stderr[-2000:]
    assert "/api/manage/no-such-thing/***/" in json.dumps(application)
    for secret in SECRETS:
        assert secret not in stdout, secret
        assert secret not in stderr, secret
    assert "authorization" not in stderr.lower()


@pytest.mark.parametrize(
    ("path", "masked"),
    [
        ("/api/v1/sales/orders/12345", "/api/v1/sales/orders/12345"),
        (
            "/api/v1/sales/x/8f14e45f-ceea-467f-a9f2-5b1a7c3d9e10",
            "/api/v1/sales/x/8f14e45f-ceea-467f-a9f2-5b1a7c3d9e10",
        ),
        ("/api/v1/sales/at/1700000000000", "/api/v1/sales/at/1700000000000"),  # fails Luhn: an id
        (f"/api/v1/sales/cards/{CARD}/charge", "/api/v1/sales/cards/***/charge"),
        ("/c/4111-1111-1111-1111", "/c/***"),
        ("/c/4111%201111%201111%201111", "/c/***"),
        ("/c/378282246310005", "/c/***"),  # 15-digit Amex
        (f"/users/{EMAIL}/orders", "/users/***/orders"),
        ("/users/jane.doe%40example.com", "/users/***"),
        ("/t/eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.abc-def", "/t/***"),
    ],
)
def test_paths_keep_their_harmless_parts(path, masked):
    assert mask_path(path) == masked


@pytest.mark.parametrize(
    ("query", "masked"),
    [
        ("page=2&limit=50", "page=2&limit=50"),
        (f"token={TOKEN}&page=2", "token=***&page=2"),
        ("Access_Token=x&API_KEY=y&password=z", "Access_Token=***&API_KEY=***&password=***"),
        ("x_api_key=y&client_secret=z&zip_code=28001", "x_api_key=***&client_secret=***&zip_code=28001"),
        ("user[password]=x&primary_key=5", "user[password]=***&primary_key=5"),
        ("email=jane.doe%40example.com", "email=***"),
        (f"q={EMAIL}&card=4111+1111+1111+1111", "q=***&card=***"),
    ],
)
def test_query_strings_mask_sensitive_parameters_and_personal_data(query, masked):
    assert mask_query(query) == masked


def test_the_masked_query_parameters_are_configurable():
    assert mask_query("tracking=abc&page=2", frozenset({"tracking"})) == "tracking=***&page=2"
    assert mask_query("token=abc", frozenset({"tracking"})) == "token=abc"


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        (
            "config refresh failed; serving the last snapshot",
            "config refresh failed; serving the last snapshot",
        ),
        ("upstream answered status code: 502", "upstream answered status code: 502"),
        ("login failed password=hunter2 for user", "login failed password=*** for user"),
        (
            "headers={'Authorization': 'Bearer abc.def', 'Host': 'x'}",
            "headers={'Authorization': '***', 'Host': 'x'}",
        ),
        ("Cookie: sessionid=abc; csrftoken=def", "Cookie: ***"),
        ('{"api_key": "k-123", "status_code": 404}', '{"api_key": "***", "status_code": 404}'),
        ("connect redis://:s3cret@127.0.0.1:6379/0 failed", "connect redis://:***@127.0.0.1:6379/0 failed"),
        (f"card {SPACED_CARD} declined for {EMAIL}", "card *** declined for ***"),
        ("GET /x?token=abc&page=2 HTTP/1.1", "GET /x?token=***&page=2 HTTP/1.1"),
    ],
)
def test_messages_mask_credentials_and_personal_data(message, masked):
    assert mask_text(message) == masked


def test_url_credentials_are_masked():
    assert (
        mask_url(f"https://u:pw@h.example/p/{EMAIL}?token=1&a=b")
        == "https://u:***@h.example/p/***?token=***&a=b"
    )


def django_not_found_record(request, extra: dict) -> logging.LogRecord:
    """The record Django logs for a 404 of `request`, with `extra` fields beside it."""
    return logging.makeLogRecord(
        {
            "name": "django.request",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "Not Found: %s",
            "args": (request.path,),
            "request": request,
            "status_code": 404,
            **extra,
        }
    )


def test_the_json_formatter_masks_message_extras_and_django_requests(rf, settings):
    settings.LOG_MASK_QUERY_PARAMS = ["token", "tracking"]
    request = rf.get(f"/api/manage/users/{EMAIL}/", {"tracking": "abc123", "page": "2"})
    record = django_not_found_record(
        request,
        {
            "path": f"/cards/{CARD}",
            "url": "http://up.example/x?tracking=abc123",
            "authorization": BEARER,
            "detail": {"cookie": "sessionid=abc", "note": f"mail {EMAIL}"},
        },
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Not Found: /api/manage/users/***/"
    assert line["request"] == "GET /api/manage/users/***/?tracking=***&page=2"
    assert line["status_code"] == 404
    assert line["path"] == "/cards/***"
    assert line["url"] == "http://up.example/x?tracking=***"
    assert line["authorization"] == "***"
    assert line["detail"] == {"cookie": "***", "note": "mail ***"}
