"""Request hygiene over raw sockets, where an HTTP client would normalize the attack away."""

import socket

import pytest


def raw_request(port: int, payload: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def get(path: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\n" + extra + b"Connection: close\r\n\r\n"


@pytest.fixture
def services(make_service, upstream, gateway):
    make_service("sales", targets=[upstream.url])
    make_service("inventory", targets=[upstream.url])
    gateway.sync()
    return gateway


@pytest.mark.parametrize(
    "path",
    [
        b"/api/v1/sales/../inventory/x",
        b"/api/v1/sales/%2e%2e/inventory/x",
        b"/api/v1/sales/%2E%2E/%2e%2e/admin/",
        b"/api/v1/sales/..%2finventory/x",
        b"/api/v1/sales%2f..%2finventory",
        b"/api/v1/sales/%5c..%5cinventory",
        b"/api/v1/sales/x\\..\\..\\inventory",
        b"/api/v1/sales/x%00.json",
        b"/api/v1/sales/..;/inventory/x",
        b"/api/v1/sales;/x",
        b"/api/v1/sales/../../../etc/passwd",
    ],
)
def test_path_tricks_are_refused_and_nothing_is_forwarded(services, upstream, path):
    response = raw_request(services.port, get(path))
    assert status_of(response) in (400, 404), response[:200]
    if status_of(response) == 400:
        assert b'"code":"INVALID_REQUEST"' in response
    assert upstream.hits() == []


def test_dot_segments_inside_the_prefix_are_resolved_consistently(services, upstream):
    response = raw_request(services.port, get(b"/api/v1/sales/a/./b/../c"))
    assert status_of(response) == 200
    assert [r.path for r in upstream.hits()] == ["/a/c"]


def test_double_slashes_are_merged_for_routing_and_forwarding(services, upstream):
    response = raw_request(services.port, get(b"/api/v1//sales//x//y"))
    assert status_of(response) == 200
    assert [r.path for r in upstream.hits()] == ["/x/y"]


def test_content_length_with_transfer_encoding_is_refused(services, upstream):
    payload = (
        b"POST /api/v1/sales/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    )
    assert status_of(raw_request(services.port, payload)) == 400
    assert upstream.hits() == []


def test_duplicate_content_length_is_refused(services, upstream):
    payload = (
        b"POST /api/v1/sales/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nabcde"
    )
    assert status_of(raw_request(services.port, payload)) == 400
    assert upstream.hits() == []


def test_duplicate_authorization_is_refused(services, upstream):
    extra = b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"
    response = raw_request(services.port, get(b"/api/v1/sales/x", extra))
    assert status_of(response) == 400
    assert upstream.hits() == []


def test_crlf_in_request_id_never_reaches_a_header(services, upstream):
    # A raw CR/LF would be a framing error; the encoded form must not be decoded into a header.
    extra = b"X-Request-ID: abc%0d%0aX-Injected:%20yes\r\n"
    response = raw_request(services.port, get(b"/api/v1/sales/x", extra))
    assert status_of(response) == 200
    assert b"x-injected" not in response.lower()
    received = upstream.hits()[0]
    assert "x-injected" not in received.headers
    assert received.headers["x-request-id"] != "abc%0d%0aX-Injected:%20yes"


def test_connection_header_cannot_strip_identity_headers(services, upstream):
    extra = b"Connection: close, X-Request-ID, X-Forwarded-For\r\n"
    payload = b"GET /api/v1/sales/x HTTP/1.1\r\nHost: gw\r\n" + extra + b"\r\n"
    assert status_of(raw_request(services.port, payload)) == 200
    headers = upstream.hits()[0].headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert len(headers["x-request-id"]) == 36


def test_connection_cannot_strip_or_spoof_the_verified_identity(
    make_service, make_tenant, make_user, bearer, upstream, gateway
):
    # Given: an authenticated member of acme and a service that requires a token.
    make_service("orders", targets=[upstream.url], auth_required=True)
    user = make_user("owner@acme.example", tenant=make_tenant("acme"))
    gateway.sync()
    authorization = bearer(user)["Authorization"].encode()
    # When: the client names the identity headers in Connection and sends its own values.
    extra = (
        b"Authorization: " + authorization + b"\r\n"
        b"Connection: X-Tenant-ID, X-User-ID, X-User-Roles\r\n"
        b"X-Tenant-ID: other-tenant\r\nX-User-ID: 1\r\nX-User-Roles: admin\r\n"
    )
    assert status_of(raw_request(gateway.port, get(b"/api/v1/orders/x", extra))) == 200
    # Then: the upstream sees the verified identity, once, not the client's.
    received = upstream.hits()[0]
    assert received.headers["x-tenant-id"] == "acme"
    assert received.headers["x-user-id"] == str(user.pk)
    assert received.headers["x-user-roles"] == "member"
    assert [v for k, v in received.header_list if k == "x-tenant-id"] == ["acme"]


def test_too_many_headers_are_refused(services, upstream):
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    response = raw_request(services.port, get(b"/api/v1/sales/x", extra))
    assert status_of(response) in (400, 431)
    assert upstream.hits() == []


def test_a_100kb_header_is_refused(services, upstream):
    extra = b"X-Big: " + b"a" * 100_000 + b"\r\n"
    response = raw_request(services.port, get(b"/api/v1/sales/x", extra))
    assert status_of(response) in (400, 431)
    assert upstream.hits() == []
