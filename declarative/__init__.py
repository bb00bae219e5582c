"""Configuration as code (SPEC section 18): the registry as one reviewable file, and back."""
