"""Queries in flight: their run ids, cancel() and timeouts, for both the srv and the exec paths."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator

from stackql_inventory.services.engine_values import QueryLimits
from stackql_inventory.services.errors import ErrorKind, UserFacingError


class Running:
    """A query in flight: the cancel/timeout flags and how to stop it."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.cancelled = False
        self.timed_out = False
        self._stopper: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self.cancelled or self.timed_out

    def set_stopper(self, stopper: Callable[[], None] | None) -> None:
        with self._lock:
            self._stopper = stopper
            fire = self.stopped and stopper is not None
        if fire:
            stopper()

    def stop(self, *, timeout: bool = False) -> None:
        with self._lock:
            if self.stopped:
                return
            if timeout:
                self.timed_out = True
            else:
                self.cancelled = True
            stopper = self._stopper
        if stopper is not None:
            stopper()

    def raise_if_stopped(self, limits: QueryLimits) -> None:
        if self.timed_out:
            raise UserFacingError(
                f"The query ran longer than {limits.timeout_s:g} s and was stopped: narrow it (more WHERE filters) "
                "or raise the timeout (STACKQL_INVENTORY_QUERY_TIMEOUT), then retry.", ErrorKind.TIMEOUT)
        if self.cancelled:
            raise UserFacingError("The query was cancelled.", ErrorKind.CANCELLED)


_RUNNING: dict[str, Running] = {}
_RUNNING_LOCK = threading.Lock()


@contextlib.contextmanager
def registered(run_id: str | None, limits: QueryLimits) -> Iterator[Running]:
    """Register a query under `run_id` (a fresh anonymous id when None) for cancel() and its timeout."""
    rid = run_id or f"anon-{uuid.uuid4().hex}"
    running = Running(rid)
    with _RUNNING_LOCK:
        if rid in _RUNNING:
            raise UserFacingError(
                f"A query with run id {rid} is already running: wait for it or cancel it first.", ErrorKind.CONFLICT)
        _RUNNING[rid] = running
    timer = None
    if limits.timeout_s is not None:
        timer = threading.Timer(limits.timeout_s, running.stop, kwargs={"timeout": True})
        timer.daemon = True
        timer.start()
    try:
        yield running
    finally:
        if timer is not None:
            timer.cancel()
        with _RUNNING_LOCK:
            _RUNNING.pop(rid, None)


def cancel(run_id: str) -> bool:
    """Cancel the running query registered under `run_id`; False when none is running.

    The query then fails with ErrorKind.CANCELLED and the engine stays usable.
    """
    with _RUNNING_LOCK:
        running = _RUNNING.get(run_id)
    if running is None:
        return False
    running.stop()
    return True


def running_ids() -> list[str]:
    """Run ids of the queries in flight (registered with run_id=…)."""
    with _RUNNING_LOCK:
        return [rid for rid in _RUNNING if not rid.startswith("anon-")]
