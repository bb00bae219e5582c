"""Roles and the scopes they carry (SPEC section 6): one definition for the data plane and Django.

Roles are ordered viewer < member < staff < admin, each including the ones before it; a
user token carries the scopes of its role, an API key carries its own.
"""

from __future__ import annotations

__all__ = ["ADMIN", "MEMBER", "ROLE_RANK", "ROLE_SCOPES", "ROLES", "STAFF", "VIEWER", "role_satisfies"]

VIEWER, MEMBER, STAFF, ADMIN = "viewer", "member", "staff", "admin"
ROLES = (VIEWER, MEMBER, STAFF, ADMIN)  # in increasing order of privilege
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}

ROLE_SCOPES = {
    VIEWER: ["read"],
    MEMBER: ["read", "write"],
    STAFF: ["read", "write", "alerts:publish"],
    ADMIN: ["read", "write", "admin", "alerts:publish"],
}


def role_satisfies(held: frozenset[str], required: frozenset[str]) -> bool:
    """True when a held role is one of `required` or outranks one; other roles must match exactly."""
    if held & required:
        return True
    best = max((ROLE_RANK.get(role, -1) for role in held), default=-1)
    return any(best >= ROLE_RANK[role] for role in required if role in ROLE_RANK)
