"""Named values of the tenant portal."""

__all__ = ["DAILY_CHART_DAYS", "HOURLY_CHART_HOURS", "LOGIN_RATE_GROUP", "RECENT_ALERTS"]

HOURLY_CHART_HOURS = 24
DAILY_CHART_DAYS = 30
RECENT_ALERTS = 10
# The API logins' django-ratelimit group: one budget for password guesses on every door.
LOGIN_RATE_GROUP = "login"
