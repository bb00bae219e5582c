"""Named values of tenancy (SPEC sections 6 and 20)."""

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_GRACE_DAYS",
    "GRACE_DAYS_RANGE",
    "MONTHLY_QUOTA_RANGE",
    "PERIOD_END_MAX_DAYS_AHEAD",
]

# Subscriptions: days a lapsed tenant keeps access, and how far ahead a period may end.
DEFAULT_GRACE_DAYS = 7
GRACE_DAYS_RANGE = (0, 365)
PERIOD_END_MAX_DAYS_AHEAD = 10 * 366

# Public-key algorithms only: HS* would let anyone holding the public JWKS forge tokens.
# An identity provider may list only these; the data plane verifies with only these.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

# Plans: a monthly request quota (SPEC section 20); empty means unlimited.
MONTHLY_QUOTA_RANGE = (1, 10**12)
