"""Usage metering roll-up, the usage API and the admin's usage view (SPEC section 20)."""
