"""The tenant portal at /portal/ (SPEC section 20): usage, quotas, plan, alerts and API keys."""
