"""JWT signing and verification keys: RS256 by default, HS256 when configured.

The embedded default generates an RSA key pair under `var/jwt/` on first run (never
committed); production passes `JWT_PRIVATE_KEY` or `JWT_PRIVATE_KEY_FILE`, and may list
previous public keys in `JWT_PUBLIC_KEYS_FILE` so tokens signed before a rotation verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from jwt.algorithms import RSAAlgorithm

__all__ = ["KeyRing", "key_ring", "ring_from_jwks", "verify_only_ring"]

_RSA_BITS = 2048
_MIN_HS256_KEY_BYTES = 32
_PEM_END = b"-----END PUBLIC KEY-----"


@dataclass(frozen=True)
class KeyRing:
    """What signs new tokens and what verifies them, by `kid`."""

    algorithm: str
    signing_kid: str
    signing_key: object
    verifying_keys: dict[str, object] = field(default_factory=dict)

    def jwks(self) -> dict:
        """The public JWK set (RFC 7517) published at /.well-known/jwks.json; empty for HS256."""
        if self.algorithm != "RS256":
            return {"keys": []}
        keys = []
        for kid, public_key in self.verifying_keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            keys.append(jwk)
        return {"keys": keys}


def _thumbprint_kid(public_key) -> str:
    """RFC 7638 thumbprint of the RSA key: stable across processes, changes on rotation."""
    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]


def _write_private(path: Path, data: bytes) -> None:
    """Create the file 0600 exactly once, even when several processes start together."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    try:
        os.link(temp, path)  # fails if another process won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)


def _embedded_private_pem() -> bytes:
    path = Path(settings.JWT_KEY_DIR) / "private.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
    return path.read_bytes()


def _private_pem() -> bytes:
    if settings.JWT_PRIVATE_KEY:
        return settings.JWT_PRIVATE_KEY.replace("\\n", "\n").encode()
    if settings.JWT_PRIVATE_KEY_FILE:
        return Path(settings.JWT_PRIVATE_KEY_FILE).read_bytes()
    return _embedded_private_pem()


def _extra_public_keys() -> list:
    if not settings.JWT_PUBLIC_KEYS_FILE:
        return []
    blob = Path(settings.JWT_PUBLIC_KEYS_FILE).read_bytes()
    blocks = [chunk + _PEM_END for chunk in blob.split(_PEM_END) if chunk.strip()]
    return [serialization.load_pem_public_key(block.strip()) for block in blocks]


def _rs256_ring() -> KeyRing:
    private_key = serialization.load_pem_private_key(_private_pem(), password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured("JWT_PRIVATE_KEY must be an RSA private key for RS256.")
    public_keys = [private_key.public_key(), *_extra_public_keys()]
    verifying = {_thumbprint_kid(key): key for key in public_keys}
    return KeyRing("RS256", _thumbprint_kid(public_keys[0]), private_key, verifying)


def _hs256_ring() -> KeyRing:
    secret = settings.JWT_SIGNING_KEY.encode()
    if len(secret) < _MIN_HS256_KEY_BYTES:
        raise ImproperlyConfigured("HS256 needs JWT_SIGNING_KEY of at least 32 bytes.")
    kid = hashlib.sha256(b"kid:" + secret).hexdigest()[:16]
    return KeyRing("HS256", kid, secret, {kid: secret})


def verify_only_ring(public_keys: list | None = None) -> KeyRing:
    """A data plane's ring (SPEC section 18): public keys only, it signs nothing. RS256 keys
    come from the control plane's JWKS or `JWT_PUBLIC_KEYS_FILE`; HS256 shares its secret."""
    if settings.JWT_ALGORITHM == "HS256":
        return _hs256_ring()
    keys = _extra_public_keys() if public_keys is None else public_keys
    return KeyRing("RS256", "", None, {_thumbprint_kid(key): key for key in keys})


def ring_from_jwks(jwks: dict) -> KeyRing:
    """The verify-only ring a control plane's public JWK set describes."""
    keys = [RSAAlgorithm.from_jwk(json.dumps(jwk)) for jwk in jwks.get("keys", []) if jwk.get("kty") == "RSA"]
    return verify_only_ring(keys)


@lru_cache(maxsize=1)
def key_ring() -> KeyRing:
    """The process's keys, loaded (or generated) once; a data plane holds public keys only."""
    if settings.DATA_PLANE_ONLY:
        return verify_only_ring()
    if settings.JWT_ALGORITHM == "RS256":
        return _rs256_ring()
    if settings.JWT_ALGORITHM == "HS256":
        return _hs256_ring()
    raise ImproperlyConfigured("JWT_ALGORITHM must be RS256 or HS256.")
