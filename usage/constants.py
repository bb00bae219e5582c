"""Named values of usage metering (SPEC section 20)."""

__all__ = ["APPLIED_BATCH_RETENTION_DAYS", "MAX_HOURLY_REPORT_DAYS", "MAX_REPORT_DAYS", "REPORT_DEFAULT_DAYS"]

# Applied batch ids are kept this long: far longer than any batch can wait in a store.
APPLIED_BATCH_RETENTION_DAYS = 7
# The usage API answers at most this span per request, and the last week when not told.
MAX_REPORT_DAYS = 400
MAX_HOURLY_REPORT_DAYS = 62
REPORT_DEFAULT_DAYS = 7
