import pytest
from django.core.exceptions import ValidationError

from registry.constants import RESERVED_PREFIXES
from registry.validators import validate_path_prefix, validate_upstream_url


@pytest.mark.parametrize("prefix", RESERVED_PREFIXES)
def test_every_reserved_prefix_is_refused(prefix):
    for value in (prefix, prefix + "/", prefix + "/sub"):
        with pytest.raises(ValidationError):
            validate_path_prefix(value)


@pytest.mark.parametrize("prefix", ["/api/v1/sales", "/api/v2/sales", "/api/v1/sales/reports"])
def test_ordinary_prefixes_are_accepted(prefix):
    validate_path_prefix(prefix)


@pytest.mark.parametrize("prefix", ["/sales", "/api/v1", "/api/v1/Sales", "/api/v1/sa les", "api/v1/x"])
def test_malformed_prefixes_are_refused(prefix):
    with pytest.raises(ValidationError):
        validate_path_prefix(prefix)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]:80",
        "http://metadata.google.internal/",
        "ftp://example.com",
        "file:///etc/passwd",
        "http://user:pw@example.com",
        "http://0.0.0.0:80",
        "http://[::ffff:169.254.169.254]/",
        "not a url",
    ],
)
def test_dangerous_upstream_urls_are_refused(url):
    with pytest.raises(ValidationError):
        validate_upstream_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000", "https://sales.internal.example:8443"])
def test_ordinary_upstream_urls_are_accepted(url):
    validate_upstream_url(url)
