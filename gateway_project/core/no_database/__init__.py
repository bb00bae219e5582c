"""A database backend for processes that must never touch one (GATEWAY_ROLE=data_plane).

Django still loads its apps and models in a data plane (health, metrics, problem pages),
but there is no registry to read: every query, cursor or connection attempt raises
`NoDatabaseError` (a `DatabaseError`, so code that degrades when the database is away
still degrades) and logs it, so an accidental ORM call on a data-plane path fails loudly.
"""
