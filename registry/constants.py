"""Named numbers and fixed lists of the registry (SPEC sections 5 and 8)."""

__all__ = [
    "ALL_METHODS",
    "BREAKER_DEFAULTS",
    "BREAKER_FAILURE_THRESHOLD_RANGE",
    "BREAKER_FAILURE_WINDOW_RANGE",
    "BREAKER_MINIMUM_THROUGHPUT_RANGE",
    "BREAKER_RECOVERY_TIMEOUT_RANGE",
    "BREAKER_SUCCESS_THRESHOLD_RANGE",
    "CACHE_TTL_RANGE",
    "CONNECT_TIMEOUT_RANGE",
    "DEFAULT_HEALTH_INTERVAL_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DESCRIPTION_MAX_LENGTH",
    "HEADER_VALUE_MAX_LENGTH",
    "HEALTH_HISTORY_PER_TARGET",
    "HEALTH_INTERVAL_RANGE",
    "LIST_ITEM_MAX_LENGTH",
    "LIST_MAX_ITEMS",
    "MAX_BODY_BYTES_RANGE",
    "RATE_BURST_RANGE",
    "RATE_LIMIT_RANGE",
    "RATE_WINDOW_SECONDS_RANGE",
    "READ_METHODS",
    "READ_TIMEOUT_RANGE",
    "RESERVED_PREFIXES",
    "RETRIES_RANGE",
    "TARGET_WEIGHT_RANGE",
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

# --- Bounds of every saved number (inclusive), checked at save by the model itself -------
# The admin, the management API and a config file all go through `full_clean()`, so these
# are the only limits; each is wide enough for any real deployment and narrow enough that
# the snapshot compile and the data plane's arithmetic cannot overflow or starve.
CONNECT_TIMEOUT_RANGE = (0.05, 60.0)  # seconds; a TCP/TLS handshake slower than 1 min is down
READ_TIMEOUT_RANGE = (0.1, 600.0)  # seconds; longer work belongs in a job, not a request
RETRIES_RANGE = (0, 5)  # each retry multiplies the load on a struggling upstream
BREAKER_FAILURE_THRESHOLD_RANGE = (1, 1000)
BREAKER_FAILURE_WINDOW_RANGE = (1, 3600)  # seconds; outcomes are kept in memory this long
BREAKER_MINIMUM_THROUGHPUT_RANGE = (1, 10_000)
BREAKER_RECOVERY_TIMEOUT_RANGE = (0.1, 3600.0)  # seconds
BREAKER_SUCCESS_THRESHOLD_RANGE = (1, 100)
HEALTH_INTERVAL_RANGE = (1, 86_400)  # seconds
MAX_BODY_BYTES_RANGE = (0, 1024**3)  # 1 GiB: larger uploads should bypass the gateway
CACHE_TTL_RANGE = (0, 86_400)  # seconds; 0 turns caching off
TARGET_WEIGHT_RANGE = (0, 1000)  # 0 takes a target out of rotation without disabling it
RATE_LIMIT_RANGE = (1, 10**9)
RATE_WINDOW_SECONDS_RANGE = (1, 31 * 86_400)  # a month: the longest quota period
RATE_BURST_RANGE = (0, 10**9)

# Free text and lists: a config row is read on every snapshot build, keep it small.
DESCRIPTION_MAX_LENGTH = 2000
LIST_MAX_ITEMS = 100  # roles, scopes, methods, paths, networks, shadowed services
LIST_ITEM_MAX_LENGTH = 200
HEADER_VALUE_MAX_LENGTH = 4096
