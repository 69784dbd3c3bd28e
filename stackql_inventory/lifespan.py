"""Work the backend does while it runs: migrate at start-up, and the local scheduler (with crashed-run
recovery) while the jobs backend is `local`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stackql_inventory.config import Backend, get_settings
from stackql_inventory.db import migrate
from stackql_inventory.services.errors import UserFacingError

log = logging.getLogger(__name__)

# Wait between migration attempts while the database is unreachable (the scheduler needs the schema).
SCHEMA_RETRY_S = 30.0


# Alembic's `context` is process-global, so two migrations must never run at once in one process.
_migrating = asyncio.Lock()


async def _upgrade() -> None:
    async with _migrating:
        await asyncio.to_thread(migrate.upgrade)


async def migrate_on_startup() -> None:
    """Bring the schema to head; an unreachable database is logged, the UI banner explains it."""
    try:
        await _upgrade()
    except UserFacingError as e:
        log.warning("migrations skipped: %s", e.message)
    except Exception:
        log.exception("migrations failed at start-up")


async def _run_scheduler(scheduler) -> None:  # noqa: ANN001 - services.scheduler.Scheduler
    # The scheduler reads and writes the schema, so it starts once migrations are at head (after
    # `migrate_on_startup`, a cheap no-op; while the database is down, retried until it answers).
    warned = False
    while True:
        try:
            await _upgrade()
            break
        except UserFacingError as e:
            if not warned:
                log.warning("scheduler waits for the database: %s", e.message)
                warned = True
            await asyncio.sleep(SCHEMA_RETRY_S)
    await scheduler.run()


@contextlib.asynccontextmanager
async def local_scheduler():
    """Run the local scheduler for the backend's lifetime; on shutdown stop it and its runners.

    At start-up it marks runs left `running` by a crashed process as failed, then runs each schedule
    whose slot passed while the app was down once. Off when the jobs backend is `databricks` or
    STACKQL_INVENTORY_SCHEDULER is false.
    """
    settings = get_settings()
    if settings.jobs_backend is not Backend.LOCAL or not settings.scheduler_enabled:
        log.info("local scheduler off jobs_backend=%s scheduler_enabled=%s", settings.jobs_backend.value,
                 settings.scheduler_enabled)
        yield
        return
    from stackql_inventory.services.scheduler import Scheduler

    scheduler = Scheduler()
    task = asyncio.create_task(_run_scheduler(scheduler), name="local-scheduler")
    try:
        yield
    finally:
        await scheduler.stop()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
