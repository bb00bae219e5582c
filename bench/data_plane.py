"""The full pipeline on a data plane: GATEWAY_ROLE=data_plane, its registry from a file and
no database (SPEC section 18 asks it to equal the traditional role within noise: the same
snapshot and the same hot path)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_plane_env", "write_data_plane_files"]

CONFIG_FILE = "gateway.yaml"
PUBLIC_KEYS_FILE = "jwt-public.pem"


def write_data_plane_files(scratch: Path) -> None:
    """In the traditional gateway's environment: the registry exported with its API-key
    hashes, and the public keys its tokens verify with."""
    from cryptography.hazmat.primitives import serialization

    from declarative.document import dump_yaml
    from declarative.export import export_document
    from tenancy.keys import key_ring

    (scratch / CONFIG_FILE).write_text(dump_yaml(export_document(include_key_hashes=True)))
    pem = b"".join(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for key in key_ring().verifying_keys.values()
    )
    (scratch / PUBLIC_KEYS_FILE).write_bytes(pem)


def data_plane_env(full_env: dict[str, str], scratch: Path) -> dict[str, str]:
    """The full gateway's environment, as a data plane: no database, the file as its source."""
    env = {key: value for key, value in full_env.items() if key != "DATABASE_URL"}
    env.update(
        GATEWAY_ROLE="data_plane",
        GATEWAY_CONFIG_SOURCE=f"file://{scratch / CONFIG_FILE}",
        JWT_PUBLIC_KEYS_FILE=str(scratch / PUBLIC_KEYS_FILE),
    )
    return env
