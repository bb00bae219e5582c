"""A control plane's side of hybrid mode (SPEC section 18): the config its data planes fetch,
the long poll that pushes each new version to them, and the list of data planes."""
