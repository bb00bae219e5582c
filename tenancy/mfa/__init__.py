"""TOTP two-factor authentication: the second-factor rules, the enrolment pages, the admin site."""
