"""Work the backend does while it runs: migrate at start-up (and, later, the local scheduler)."""

from __future__ import annotations

import asyncio
import logging

from stackql_inventory.db import migrate
from stackql_inventory.services.errors import UserFacingError

log = logging.getLogger(__name__)


async def migrate_on_startup() -> None:
    """Bring the schema to head; an unreachable database is logged, the UI banner explains it."""
    try:
        await asyncio.to_thread(migrate.upgrade)
    except UserFacingError as e:
        log.warning("migrations skipped: %s", e.message)
    except Exception:
        log.exception("migrations failed at start-up")
