"""Named numbers and fixed lists of the registry (SPEC sections 5 and 8)."""

__all__ = [
    "ALL_METHODS",
    "BREAKER_DEFAULTS",
    "DEFAULT_HEALTH_INTERVAL_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "HEALTH_HISTORY_PER_TARGET",
    "READ_METHODS",
    "RESERVED_PREFIXES",
    "ROLE_SCOPES",
]

ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Paths the gateway serves itself: a service may not claim them or anything below them.
RESERVED_PREFIXES = (
    "/api/v1/auth",
    "/api/v1/users",
    "/api/v1/alerts",
    "/api/v1/health",
    "/api/v1/status",
    "/api/v1/geocode",
    "/api/v1/docs",
    "/api/manage",
    "/api/schema",
    "/api/docs",
    "/admin",
    "/health",
    "/metrics",
    "/problems",
    "/dashboard",
    "/static",
    "/.well-known",
)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_HEALTH_INTERVAL_SECONDS = 30
HEALTH_HISTORY_PER_TARGET = 100

BREAKER_DEFAULTS = {
    "failure_threshold": 5,
    "failure_window": 120,
    "minimum_throughput": 5,
    "recovery_timeout": 30,
    "success_threshold": 3,
}

# Scopes a user token carries for its role; API keys carry their own scopes.
ROLE_SCOPES = {
    "viewer": ["read"],
    "member": ["read", "write"],
    "staff": ["read", "write", "alerts:publish"],
    "admin": ["read", "write", "admin", "alerts:publish"],
}
