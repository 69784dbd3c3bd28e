"""Interactive path: the warm `stackql srv` child (Postgres wire protocol) and its small connection pool."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from stackql_inventory.services.engine_errors import query_error
from stackql_inventory.services.engine_running import registered
from stackql_inventory.services.engine_values import Mode, QueryLimits, QueryResult, text_row
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _SrvStopper:
    """Cancels a query on srv: Postgres cancel requests, then (after a grace period) closing the socket."""

    def __init__(self, conn: Any, grace_s: float):
        self.conn = conn
        self.grace_s = grace_s
        self.done = threading.Event()
        self.forced = False

    def __call__(self) -> None:
        threading.Thread(target=self._loop, name="stackql-cancel", daemon=True).start()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.grace_s
        while not self.done.is_set():
            try:
                self.conn.cancel()
            except Exception:  # the connection may already be gone
                pass
            if self.done.wait(0.2):
                return
            if time.monotonic() >= deadline:
                # The server ignored the cancel request: cut the connection so the caller returns.
                self.forced = True
                with contextlib.suppress(OSError):
                    with socket.socket(fileno=os.dup(self.conn.fileno())) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                return


class Srv:
    """One `stackql srv` child and its small pool of psycopg2 connections."""

    def __init__(self, argv: list[str], env: dict[str, str], fingerprint: str, secrets: list[str],
                 pool_size: int, start_timeout_s: float):
        # The credential values go to the child's environment; this process keeps them only as
        # `secrets`, to redact whatever the server says (a caller that passes no credentials, such as
        # the catalog, still reaches a server that holds them all).
        self.secrets = list(secrets)
        self.fingerprint = fingerprint
        self.pool_size = pool_size
        self.in_flight = 0
        self.retired = False
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        for attempt in (1, 2, 3):
            # A free port can be taken between choosing it and stackql binding it: choose again.
            self.port = _free_port()
            self._stderr: deque[str] = deque(maxlen=50)
            self.proc = subprocess.Popen(
                [*argv[:2], "--pgsrv.address=127.0.0.1", f"--pgsrv.port={self.port}", *argv[2:]], env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True)
            threading.Thread(target=self._drain, args=(self.proc, self._stderr), name="stackql-srv-stderr",
                             daemon=True).start()
            if self._wait_ready(start_timeout_s, secrets, last_attempt=attempt == 3):
                break
        log.info("stackql srv started pid=%s port=%s", self.proc.pid, self.port)

    @staticmethod
    def _drain(proc: subprocess.Popen[bytes], lines: deque[str]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            lines.append(raw.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, secrets: list[str]) -> str:
        return redact("\n".join(self._stderr), [*secrets, *self.secrets])

    def _connect(self, timeout_s: float = 5.0) -> Any:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="stackql", dbname="stackql",
            connect_timeout=max(1, int(timeout_s)), sslmode="disable", gssencmode="disable",
            application_name="stackql-inventory")
        conn.autocommit = True
        return conn

    def _wait_ready(self, timeout_s: float, secrets: list[str], last_attempt: bool) -> bool:
        """True once a connection succeeds; False when the port was taken (try another)."""
        import psycopg2

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                time.sleep(0.05)  # let the drain thread collect the last words
                if not last_attempt and "address already in use" in "\n".join(self._stderr):
                    return False
                raise UserFacingError(
                    f"The stackql server exited at start-up (code {self.proc.returncode}): "
                    f"{self.stderr_tail(secrets) or 'no message'}. Check the provider auth settings, then retry.",
                    ErrorKind.CONFIG)
            try:
                self._idle.append(self._connect(1.0))
                return True
            except psycopg2.OperationalError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise UserFacingError(
                        f"The stackql server did not accept connections within {timeout_s:g} s. Retry; if it "
                        "keeps failing, check that the stackql binary runs on this machine.",
                        ErrorKind.BINARY) from None
                time.sleep(0.02)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def acquire(self) -> Any:
        """A pooled connection (checked for a hang-up first) or a new one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            # An idle connection has nothing to read; if it does, the server hung up on it.
            if conn.closed == 0 and not select.select([conn], [], [], 0)[0]:
                return conn
            with contextlib.suppress(Exception):
                conn.close()

    def release(self, conn: Any, healthy: bool) -> None:
        with self._lock:
            if healthy and not self.retired and conn.closed == 0 and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        with contextlib.suppress(Exception):
            conn.close()

    def stop(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
            log.info("stackql srv stopped pid=%s", self.proc.pid)


class WarmSrv:
    """An engine's warm `stackql srv`: one current server, started on demand, replaced when its credentials change.

    A replaced server keeps serving the queries already on it and stops after the last of them.
    """

    def __init__(self, cancel_grace_s: float):
        self.cancel_grace_s = cancel_grace_s
        self._srv: Srv | None = None
        self._lock = threading.Lock()

    def run(self, statement: str, limits: QueryLimits, run_id: str | None, *, wanted: str | None,
            binary: Callable[[], Any], start: Callable[[Any], Srv], secrets: list[str]) -> QueryResult:
        """Run one statement on the current server (`wanted`: the credentials' fingerprint, None: any).

        `binary()` provisions the binary (called before each lease); `start(binary)` starts a new server.
        """
        import psycopg2
        import psycopg2.errors

        t0 = time.monotonic()
        with registered(run_id, limits) as running, self._connection(wanted, binary, start, secrets) as (srv, conn):
            secrets = [*secrets, *srv.secrets]
            stopper = _SrvStopper(conn, self.cancel_grace_s)
            healthy = True
            try:
                running.set_stopper(stopper)
                running.raise_if_stopped(limits)
                conn.notices.clear()
                with conn.cursor() as cur:
                    cur.execute(statement)
                    if cur.description is None:
                        columns, raw = [], []
                    else:
                        columns = [d.name for d in cur.description]
                        limit = limits.row_limit
                        raw = cur.fetchall() if limit is None else cur.fetchmany(limit + 1)
                truncated = limits.row_limit is not None and len(raw) > limits.row_limit
                rows = [text_row(tuple(r)) for r in (raw[: limits.row_limit] if truncated else raw)]
                messages = tuple(redact(re.sub(r"^[A-Z]+:\s+", "", n).strip(), secrets) for n in conn.notices)
            except psycopg2.errors.QueryCanceled:
                running.raise_if_stopped(limits)
                raise UserFacingError("The query was cancelled.", ErrorKind.CANCELLED) from None
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                healthy = False
                running.raise_if_stopped(limits)
                time.sleep(0.05)
                if not srv.alive:
                    self._discard(srv)
                tail = srv.stderr_tail(secrets)
                raise UserFacingError(
                    "The stackql server dropped the connection"
                    + (f" ({tail.splitlines()[-1]})" if tail else "")
                    + ". Run the query again (the server restarts automatically).", ErrorKind.UPSTREAM) from None
            except psycopg2.Error as exc:
                message = (exc.diag.message_primary or exc.pgerror or str(exc)).strip()
                raise query_error(message.splitlines() or [str(exc)], secrets) from None
            finally:
                stopper.done.set()
                running.set_stopper(None)
                srv.release(conn, healthy and not stopper.forced)
        elapsed = time.monotonic() - t0
        log.debug("stackql query done run_id=%s mode=interactive rows=%d elapsed_s=%.3f", run_id, len(rows), elapsed)
        return QueryResult(columns, rows, truncated, elapsed, messages, Mode.INTERACTIVE.value)

    def close(self) -> None:
        """Stop the current server (a later query starts a new one)."""
        with self._lock:
            srv, self._srv = self._srv, None
        if srv is not None:
            srv.stop()

    @contextlib.contextmanager
    def _lease(self, wanted: str | None, binary: Callable[[], Any], start: Callable[[Any], Srv]) -> Iterator[Srv]:
        info = binary()
        with self._lock:
            srv = self._srv
            if srv is None or not srv.alive or (wanted is not None and srv.fingerprint != wanted):
                old = srv
                srv = start(info)
                self._srv = srv
                if old is not None:
                    old.retired = True
                    if old.in_flight == 0:
                        old.stop()
                    # else: the last query on it stops it (below); new queries use the new server.
            srv.in_flight += 1
        try:
            yield srv
        finally:
            with self._lock:
                srv.in_flight -= 1
                stop = srv.retired and srv.in_flight == 0
            if stop:
                srv.stop()

    @contextlib.contextmanager
    def _connection(self, wanted: str | None, binary: Callable[[], Any], start: Callable[[Any], Srv],
                    secrets: list[str]) -> Iterator[tuple[Srv, Any]]:
        """A leased server and one of its connections; a server that stopped answering is replaced once.

        Nothing has been sent yet when connecting fails, so trying again on a fresh server is safe.
        """
        import psycopg2

        for attempt in (1, 2):
            with self._lease(wanted, binary, start) as srv:
                try:
                    conn = srv.acquire()
                except psycopg2.OperationalError:
                    tail = srv.stderr_tail(secrets)
                    self._discard(srv)
                    if attempt == 2:
                        raise UserFacingError(
                            f"The stackql server is not answering: {tail or 'no message'}. Retry; if it keeps "
                            "failing, check that the stackql binary runs on this machine.",
                            ErrorKind.UPSTREAM) from None
                    log.warning("stackql srv not answering, restarting pid=%s", srv.proc.pid)
                    continue
                yield srv, conn
                return

    def _discard(self, srv: Srv) -> None:
        with self._lock:
            if self._srv is srv:
                self._srv = None
            srv.retired = True
