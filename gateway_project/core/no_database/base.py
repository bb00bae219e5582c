"""Django's dummy backend with an error that names the cause (see the package docstring)."""

from __future__ import annotations

import logging

from django.db.backends.dummy import base as dummy
from django.db.utils import DatabaseError

__all__ = ["DatabaseWrapper", "NoDatabaseError"]

logger = logging.getLogger("gateway.no_database")

MESSAGE = "This process runs without a database (GATEWAY_ROLE=data_plane): nothing may query one."


class NoDatabaseError(DatabaseError):
    """Something on a data plane tried to use the database."""


def refuse(*args, **kwargs):
    logger.error(MESSAGE, stack_info=True)
    raise NoDatabaseError(MESSAGE)


class DatabaseOperations(dummy.DatabaseOperations):
    quote_name = refuse


class DatabaseWrapper(dummy.DatabaseWrapper):
    """Every entry point the dummy backend refuses, refused with `NoDatabaseError`."""

    ops_class = DatabaseOperations
    _cursor = refuse
    ensure_connection = refuse
    _commit = refuse
    _rollback = dummy.ignore  # undoing nothing is harmless (cleanup paths call it)
    _close = dummy.ignore
    _savepoint = refuse
    _savepoint_commit = refuse
    _savepoint_rollback = dummy.ignore
    _set_autocommit = refuse
