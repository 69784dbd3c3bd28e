"""Health of the app's dependencies, as messages for the UI banner."""

from __future__ import annotations

from stackql_inventory.db import engine as db_engine
from stackql_inventory.services.errors import UserFacingError


def database_problem() -> str:
    """'' when the database answers `SELECT 1`, else a message saying what is wrong and what to set."""
    try:
        db_engine.ping()
    except UserFacingError as e:
        return e.message
    return ""
