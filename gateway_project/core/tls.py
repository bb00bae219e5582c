"""TLS contexts: the gateway's own listener and its connections to upstream targets (SPEC
section 22).

Upstream TLS is verified by default against the system's CA bundle; a target may name its
own CA bundle, a client certificate and key (mTLS), or turn verification off. The data
plane (`proxy/`) and the health sweep (`registry/health.py`) build their contexts here, so
a target that the proxy reaches is probed the same way. Contexts are cached by the files'
paths and modification times: a rotated certificate is picked up at the next compile.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

__all__ = [
    "TLS_MIN_VERSIONS",
    "TlsFiles",
    "server_ssl_context",
    "target_tls_errors",
    "upstream_ssl_context",
]

TLS_MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsFiles:
    """The TLS settings of one target, as saved (paths on the gateway's hosts)."""

    __slots__ = ("verify", "ca_file", "cert_file", "key_file")

    def __init__(
        self, verify: bool = True, ca_file: str = "", cert_file: str = "", key_file: str = ""
    ) -> None:
        self.verify, self.ca_file, self.cert_file, self.key_file = verify, ca_file, cert_file, key_file

    @classmethod
    def of(cls, target) -> TlsFiles:
        return cls(
            target.tls_verify, target.tls_ca_file, target.tls_client_cert_file, target.tls_client_key_file
        )

    @property
    def default(self) -> bool:
        """Verified against the system bundle with no client certificate: no context needed."""
        return self.verify and not (self.ca_file or self.cert_file or self.key_file)


def upstream_ssl_context(files: TlsFiles) -> ssl.SSLContext | None:
    """The client context for a target (None: the client's default, verified, context).

    Raises OSError or ssl.SSLError when a file is missing or unreadable."""
    if files.default:
        return None
    stamps = tuple(_modified(path) for path in (files.ca_file, files.cert_file, files.key_file))
    return _cached_context(files.verify, files.ca_file, files.cert_file, files.key_file, stamps)


@lru_cache(maxsize=256)
def _cached_context(verify: bool, ca_file: str, cert_file: str, key_file: str, _stamps) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def _modified(path: str) -> float:
    return os.stat(path).st_mtime if path else 0.0


def target_tls_errors(url: str, files: TlsFiles) -> dict[str, str]:
    """Field errors for a target's TLS settings (empty when they load), checked at save."""
    if files.default:
        return {}
    if not url.lower().startswith("https://"):
        field = "tls_verify" if not files.verify else _first_set(files)
        return {field: "TLS settings apply to https:// targets only."}
    if files.key_file and not files.cert_file:
        return {"tls_client_cert_file": "A client key needs its client certificate."}
    errors = {}
    if files.ca_file:
        try:
            ssl.create_default_context(cafile=files.ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            errors["tls_ca_file"] = f"Not a readable PEM CA bundle: {_reason(exc)}"
    if files.cert_file:
        try:
            ssl.create_default_context().load_cert_chain(files.cert_file, files.key_file or None)
        except (OSError, ssl.SSLError, ValueError) as exc:
            field = (
                "tls_client_key_file"
                if files.key_file and os.path.exists(files.cert_file)
                else "tls_client_cert_file"
            )
            errors[field] = f"The client certificate and key do not load: {_reason(exc)}"
    return errors


def _first_set(files: TlsFiles) -> str:
    for field, value in (
        ("tls_ca_file", files.ca_file),
        ("tls_client_cert_file", files.cert_file),
        ("tls_client_key_file", files.key_file),
    ):
        if value:
            return field
    return "tls_verify"


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def server_ssl_context(cert_file: str, key_file: str, min_version: str) -> ssl.SSLContext:
    """The listener's context: TLS 1.2 or 1.3 at least (GATEWAY_TLS_MIN_VERSION)."""
    if min_version not in TLS_MIN_VERSIONS:
        raise ValueError(
            f"GATEWAY_TLS_MIN_VERSION must be one of {', '.join(TLS_MIN_VERSIONS)}, not {min_version!r}"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_MIN_VERSIONS[min_version]
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])  # uvicorn speaks HTTP/1.1 only
    return context
