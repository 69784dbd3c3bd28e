"""StackQL query engine: owns pystackql and the stackql child processes (warm `srv` for the IDE, `exec` for jobs)."""

# Why not pystackql's execute(): it runs one shell string (quotes, `$`, backticks and newlines get
# mangled, `-- comments` swallow the rest of the query), hides every error as an empty result
# unless told otherwise, inherits (or shell-injects) credentials through the environment, and calls
# exit(1) when the binary is missing. pystackql is kept for what it does well: provisioning the
# binary (download into `download_dir`), reading its version, and the default flag set. Queries go
# to the binary as argv lists with a per-child `env=` dict, and results are read here.

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cached_property, partial
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from stackql_inventory import config
from stackql_inventory.services import sql_text
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

log = logging.getLogger(__name__)

Row = tuple[str | None, ...]


class Mode(str, Enum):
    """How a query reaches stackql."""

    INTERACTIVE = "interactive"  # the warm `stackql srv` over the Postgres wire (IDE)
    BATCH = "batch"  # one `stackql exec` per run (runner)


@dataclass(frozen=True)
class QueryLimits:
    """Per-query limits; None means unlimited."""

    row_limit: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.row_limit is not None and self.row_limit < 1:
            raise UserFacingError("The row limit must be at least 1.", ErrorKind.VALIDATION)
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise UserFacingError("The query timeout must be a positive number of seconds.", ErrorKind.VALIDATION)

    @classmethod
    def from_settings(cls, settings: config.Settings | None = None) -> QueryLimits:
        """The configured defaults (STACKQL_INVENTORY_ROW_LIMIT, STACKQL_INVENTORY_QUERY_TIMEOUT)."""
        s = settings or config.get_settings()
        return cls(row_limit=s.row_limit, timeout_s=s.query_timeout_s)


@dataclass(frozen=True)
class QueryResult:
    """A finished query: columns in SELECT order, raw string values, and how it went."""

    columns: list[str]
    rows: list[Row]  # stackql's values as it returned them: strings (JSON text for objects) or None
    truncated: bool  # True when the row limit cut the result
    elapsed_s: float
    messages: tuple[str, ...] = ()  # stackql's non-error messages (e.g. "OK", "… successfully installed")
    mode: str = Mode.INTERACTIVE.value

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @cached_property
    def dataframe(self) -> Any:
        """The rows as a pandas DataFrame with sensible dtypes (numbers, booleans, timestamps; JSON stays text)."""
        return to_dataframe(self.columns, self.rows)


# ============================================================================ values and dtypes

_INT_RE = re.compile(r"-?(0|[1-9]\d{0,17})")
_DECIMAL_RE = re.compile(r"-?(0|[1-9]\d*)(\.\d+([eE][+-]?\d+)?|[eE][+-]?\d+)")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?")
_BOOLS = {"true": True, "false": False}


def _all_match(values: list[str], test: Callable[[str], Any]) -> bool:
    # A sample first: most text columns fail on their first values, so big columns stay cheap.
    return all(test(v) for v in values[:200]) and all(test(v) for v in values[200:])


def _typed_series(values: tuple[str | None, ...]) -> Any:
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and _all_match(present, _INT_RE.fullmatch):
        return pd.Series([None if v is None else int(v) for v in values], dtype="Int64")
    if present and _all_match(present, lambda v: _INT_RE.fullmatch(v) or _DECIMAL_RE.fullmatch(v)):
        return pd.Series([None if v is None else float(v) for v in values], dtype="Float64")
    if present and _all_match(present, lambda v: v.lower() in _BOOLS):
        return pd.Series([None if v is None else _BOOLS[v.lower()] for v in values], dtype="boolean")
    if present and _all_match(present, _TS_RE.fullmatch):
        try:
            return pd.to_datetime(pd.Series(values, dtype="object"), utc=True, format="ISO8601")
        except (ValueError, TypeError):
            pass
    return pd.Series(values, dtype="string")


def to_dataframe(columns: list[str], rows: list[Row]) -> Any:
    """Build a DataFrame from stackql's string values, inferring a dtype per column."""
    import pandas as pd

    if not columns:
        return pd.DataFrame(index=range(len(rows)))
    by_column = list(zip(*rows)) if rows else [() for _ in columns]
    frame = pd.concat([_typed_series(vals).reset_index(drop=True) for vals in by_column], axis=1)
    frame.columns = list(columns)
    return frame


def _to_text(value: Any) -> str | None:
    """One stackql value as text: strings pass, JSON structures are re-encoded, Go sql.Null* unwrapped."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "Valid" in value and len(value) <= 2:
        if not value.get("Valid"):
            return None
        inner = next((v for k, v in value.items() if k != "Valid"), None)
        return _to_text(inner)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, (int, float)):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


_TEXT_TYPES = frozenset({str, type(None)})


def _text_row(values: tuple[Any, ...]) -> Row:
    for v in values:
        if v is not None and v.__class__ is not str:
            return tuple(_to_text(x) for x in values)
    return values


# ============================================================================ column order


def resolve_columns(statement: str, keys: list[str], describe: Callable[[str], list[str]]) -> list[str]:
    """Put stackql's JSON keys (sorted alphabetically by Go) back into SELECT order.

    The order comes from the statement (aliases, column names, expression texts via sql_text/sqlglot),
    `*` / `t.*` and anything unresolvable from `describe(fqn)` (DESCRIBE column order); keys not
    accounted for go last, in JSON order. With no keys (empty result) the promised columns are returned.
    """
    meta = sql_text.meta_columns(statement)
    if meta is not None:
        return _merge_in_order(meta, keys) if keys else meta
    items = sql_text.select_items(statement)
    if items is None:
        return _order_by_describe(keys, sql_text.referenced_resources(statement), describe)
    remaining = list(keys)
    ordered: list[str] = []
    unresolved = False
    for item in items:
        if item.star is not None:
            described = [c for fqn in item.star for c in _safe_describe(describe, fqn)]
            if not keys:
                ordered.extend(c for c in described if c not in ordered)
                continue
            for col in described:
                key = _find_key(col, remaining)
                if key is not None:
                    ordered.append(key)
                    remaining.remove(key)
            continue
        key = _match_item(item, remaining)
        if key is not None:
            ordered.append(key)
            remaining.remove(key)
        elif not keys:
            ordered.append(item.name or item.text)
        else:
            unresolved = True
    if unresolved and remaining:
        remaining = _order_by_describe(remaining, sql_text.referenced_resources(statement), describe)
    return ordered + remaining


def _safe_describe(describe: Callable[[str], list[str]], fqn: str) -> list[str]:
    try:
        return list(describe(fqn)) if fqn else []
    except UserFacingError:
        return []


def _find_key(name: str, keys: list[str]) -> str | None:
    if name in keys:
        return name
    low = name.lower()
    return next((k for k in keys if k.lower() == low), None)


def _normal(text: str) -> str:
    return re.sub(r"\s+", "", text).lower().replace("`", "").replace('"', "")


def _match_item(item: sql_text.SelectItem, keys: list[str]) -> str | None:
    if item.name:
        key = _find_key(item.name, keys)
        if key is not None:
            return key
    key = _find_key(item.text, keys)
    if key is not None:
        return key
    wanted = _normal(item.text)
    return next((k for k in keys if _normal(k) == wanted), None)


def _merge_in_order(expected: list[str], keys: list[str]) -> list[str]:
    ordered = [k for e in expected if (k := _find_key(e, keys)) is not None]
    return ordered + [k for k in keys if k not in ordered]


def _order_by_describe(keys: list[str], resources: list[str], describe: Callable[[str], list[str]]) -> list[str]:
    described = [c.lower() for fqn in resources for c in _safe_describe(describe, fqn)]
    rank = {c: i for i, c in reversed(list(enumerate(described)))}
    known = sorted((k for k in keys if k.lower() in rank), key=lambda k: rank[k.lower()])
    return known + [k for k in keys if k.lower() not in rank]


# ============================================================================ errors from stackql

_BENIGN = re.compile(
    r"^(OK|mutating statement queued|The operation was despatched successfully|DDL Execution Completed"
    r"|.*\bsuccessfully (installed|pulled|deleted|created|updated)\b.*|warning\b.*)$",
    re.I,
)
_HINTS: tuple[tuple[re.Pattern[str], ErrorKind, str], ...] = (
    (re.compile(r"http response status code: 401"), ErrorKind.AUTH,
     "The provider rejected or did not get credentials: check its variables on the Providers page, then retry."),
    (re.compile(r"http response status code: 403"), ErrorKind.PERMISSION,
     "The credentials lack permission for this resource: grant it, or map other credentials, then retry."),
    (re.compile(r"http response status code: 429"), ErrorKind.RATE_LIMIT,
     "The provider is rate-limiting requests: wait a minute, then retry."),
    (re.compile(r"http response status code: 5\d\d"), ErrorKind.UPSTREAM,
     "The provider's API failed: retry later."),
    (re.compile(r"http response status code: 404"), ErrorKind.NOT_FOUND,
     "The provider found nothing there: check the values in the WHERE clause (project, region, …)."),
    (re.compile(r"cannot find matching operation"), ErrorKind.VALIDATION,
     "Add the resource's required parameters to the WHERE clause ({methods} lists them), then run it again."),
    (re.compile(r"could not locate (table|provider|service)"), ErrorKind.NOT_FOUND,
     "Check the name in the schema browser, or pull the provider (REGISTRY PULL <provider>), then retry."),
    (re.compile(r"syntax error", re.I), ErrorKind.VALIDATION,
     "Fix the SQL near the position shown, then run it again."),
    (re.compile(r"context deadline exceeded|i/o timeout|connection refused|no such host", re.I), ErrorKind.UPSTREAM,
     "stackql could not reach the provider's API: check the network or proxy, then retry."),
)


def split_stderr(text: str) -> tuple[list[str], list[str]]:
    """stackql's stderr as (error lines, message lines); messages are its non-error notes ("OK", …)."""
    errors, messages = [], []
    for line in text.splitlines():
        line = line.strip()
        if line:
            (messages if _BENIGN.match(line) else errors).append(line)
    return errors, messages


def query_error(lines: list[str], secrets: list[str]) -> UserFacingError:
    """A UserFacingError carrying stackql's own message (redacted) and what to do next."""
    text = redact("\n".join(lines), secrets).strip()
    first = text.splitlines()[0] if text else "stackql reported an error without a message"
    if first.startswith("query returns error: "):
        first = first[len("query returns error: "):]
    for pattern, kind, hint in _HINTS:
        if pattern.search(text):
            fqn = re.search(r"SHOW METHODS IN (\S+?):", text)
            hint = hint.format(methods=f"SHOW METHODS IN {fqn.group(1)}" if fqn else "SHOW METHODS IN <resource>")
            break
    else:
        kind, hint = ErrorKind.QUERY, "Fix the query, then run it again."
    if len(first) > 600:
        first = first[:600] + "…"
    return UserFacingError(f"stackql: {first} — {hint}", kind, detail=text)


def _secret_values(provider_env: Mapping[str, str] | None) -> list[str]:
    """Every value to hide: each credential, plus the long strings inside JSON credentials and key files."""
    found: list[str] = []
    for value in (provider_env or {}).values():
        found.append(value)
        found.extend(line.strip() for line in value.splitlines() if len(line.strip()) >= 12)
        try:
            parsed = json.loads(value)
        except ValueError:
            continue
        stack = [parsed]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, str) and len(node) >= 8:
                found.append(node)
                found.extend(part.strip() for part in re.split(r"\\n|\n", node) if len(part.strip()) >= 12)
    return found


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_env(provider_env: Mapping[str, str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in (provider_env or {}).items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise UserFacingError(
                f"'{str(name)[:64]}' is not a valid environment variable name: use letters, digits and "
                "underscores, then save the provider mapping again.", ErrorKind.VALIDATION)
        if not isinstance(value, str) or "\x00" in value:
            raise UserFacingError(
                f"The value of {name} is not plain text: fix the secret it is read from, then retry.",
                ErrorKind.VALIDATION)
        env[name] = value
    return env


def _auth_json(auth: Mapping[str, Any] | None) -> str | None:
    if not auth:
        return None
    try:
        return json.dumps(auth, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        raise UserFacingError("The provider auth settings are not valid JSON: fix them, then retry.",
                              ErrorKind.VALIDATION) from None


def prepare_statement(query: str) -> str:
    """The one statement to send: comments stripped, trailing `;` dropped; refuses zero or several."""
    found = sql_text.statements(query or "")
    if not found:
        raise UserFacingError("There is no statement to run: write a query, then run it.", ErrorKind.VALIDATION)
    if len(found) > 1:
        raise UserFacingError(
            f"The editor holds {len(found)} statements and stackql runs one at a time: select the one you "
            "want (or put the cursor in it), then run again.", ErrorKind.VALIDATION)
    text = sql_text.strip_comments(found[0].text).strip()
    if not text:
        raise UserFacingError("There is no statement to run: write a query, then run it.", ErrorKind.VALIDATION)
    return text


# ============================================================================ running queries: cancel and timeout


class _Running:
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


_RUNNING: dict[str, _Running] = {}
_RUNNING_LOCK = threading.Lock()


@contextlib.contextmanager
def _registered(run_id: str | None, limits: QueryLimits) -> Iterator[_Running]:
    rid = run_id or f"anon-{uuid.uuid4().hex}"
    running = _Running(rid)
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


# ============================================================================ the binary (pystackql)

_PROVISION_CODE = (
    "import sys\n"
    "from pystackql import StackQL\n"
    "StackQL(download_dir=sys.argv[1])\n"
)


def _last_error_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    err = next((ln for ln in reversed(lines) if "ERROR" in ln or "Error" in ln), lines[-1] if lines else "")
    err = re.sub(r"//[^/@\s]+@", "//", err)  # never echo proxy credentials
    return err[:300]


@dataclass(frozen=True)
class BinaryInfo:
    """The provisioned stackql binary as pystackql reports it."""

    path: str
    version: str
    sha: str
    flags: tuple[str, ...]  # pystackql's global flags (concurrency, paging, timeouts, approot)


def _global_flags(params: list[str]) -> tuple[str, ...]:
    flags, skip = [], False
    for i, p in enumerate(params):
        if skip:
            skip = False
            continue
        if i == 0 and p == "exec":
            continue
        if p == "--output":
            skip = True
            continue
        flags.append(p)
    return tuple(flags)


# ============================================================================ interactive: stackql srv


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


class _Srv:
    """One `stackql srv` child and its small pool of psycopg2 connections."""

    def __init__(self, argv: list[str], env: dict[str, str], fingerprint: str, secrets: list[str],
                 pool_size: int, start_timeout_s: float):
        # Credential values live only in the child's environment: `secrets` (for redacting start-up
        # errors) is used here and not kept; later callers pass their own.
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
        return redact("\n".join(self._stderr), secrets)

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


# ============================================================================ batch: stackql exec, streamed

_STREAM_BATCH = 512  # lines per batch: big enough to amortise Python's per-batch work, small enough for the CPU cache


def _row_maker(cols: list[str]) -> Callable[[list[dict[str, Any]]], Iterator[tuple[Any, ...]]]:
    """A C-level map from row objects to tuples in column order (KeyError when a row lacks a column)."""
    if len(cols) >= 2:
        return partial(map, itemgetter(*cols))
    if len(cols) == 1:
        get_one = itemgetter(cols[0])
        return lambda objs: zip(map(get_one, objs))  # 1-tuples
    return lambda objs: (() for _ in objs)


class RowStream:
    """A streamed batch query: `columns` (SELECT order) and `rows`, an iterator of tuples of str | None.

    Use as a context manager (`with engine.stream(...) as s:`). Errors stackql reports are raised
    from `rows` as soon as they are seen, at the latest when the rows run out; the exit code is
    checked too. After the rows are consumed, `row_count`, `truncated`, `elapsed_s` and `messages` are set.
    """

    columns: list[str]

    def __init__(self, engine: Engine, statement: str, env: dict[str, str], limits: QueryLimits,
                 run_id: str | None, auth_json: str | None, secrets: list[str]):
        self._engine = engine
        self._statement = statement
        self._env = env
        self.limits = limits
        self._run_id = run_id
        self._auth_json = auth_json
        self._secrets = secrets
        self.columns = []
        self.row_count = 0
        self.truncated = False
        self.elapsed_s = 0.0
        self.messages: tuple[str, ...] = ()
        self._stderr: list[str] = []
        self._stderr_done = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._registration: contextlib.AbstractContextManager[_Running] | None = None
        self._running: _Running | None = None
        self._first: dict[str, Any] | None = None
        self._rows: Iterator[Row] | None = None  # chained batches of _iterate
        self._finished = False
        self._t0 = 0.0

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> RowStream:
        self._t0 = time.monotonic()
        binary = self._engine.binary()
        self._registration = _registered(self._run_id, self.limits)
        self._running = self._registration.__enter__()
        try:
            argv = [binary.path, "exec", self._statement, "--output", "jsonl", *binary.flags]
            if self._auth_json:
                argv += ["--auth", self._auth_json]
            env, self._env = self._env, {}  # the values belong to the child alone from here on
            self._proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                close_fds=True, bufsize=1 << 20)
            del env
            threading.Thread(target=self._drain, name="stackql-exec-stderr", daemon=True).start()
            self._running.set_stopper(self._kill)
            first = self._proc.stdout.readline() if self._proc.stdout else b""
            if first:
                self._first = self._parse(first)
                keys = list(self._first)
            else:
                self._finish()
                keys = []
            self.columns = resolve_columns(self._statement, keys, self._engine.describe_columns)
            self._rows = chain.from_iterable(self._iterate())
            return self
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(self, *exc: Any) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(Exception):
                        pipe.close()
        if self._registration is not None:
            reg, self._registration = self._registration, None
            reg.__exit__(None, None, None)

    @property
    def rows(self) -> Iterator[Row]:
        if self._rows is None:
            raise RuntimeError("use the stream inside `with engine.stream(...) as s:`")
        return self._rows

    # ---------------------------------------------------------------- internals
    def _drain(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        try:
            for raw in proc.stderr:
                self._stderr.append(raw.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass
        finally:
            self._stderr_done.set()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._kill()
            self._finish(allow_errors_only=True)
            raise UserFacingError(
                "stackql printed output that is not JSON Lines; check that the binary supports --output jsonl "
                "(a current stackql release), then retry.", ErrorKind.BINARY) from None
        if not isinstance(obj, dict):
            self._kill()
            raise UserFacingError("stackql printed an unexpected JSON value instead of a row.", ErrorKind.BINARY)
        return obj

    def _iterate(self) -> Iterator[list[Row]]:
        """The rows in batches of up to `_STREAM_BATCH` lines (the `rows` property chains them).

        A batch's lines are parsed, checked and turned into tuples by C loops (orjson, itemgetter,
        set(map(type, …))), so Python runs per batch, not per row. A batch that is not plain (a line
        that is not a JSON object, a row with keys the first row did not have, a value that is not a
        string or null) is redone row by row: it yields the rows before the one at fault, then raises.
        """
        cols = self.columns
        limit = self.limits.row_limit
        stdout = self._proc.stdout if self._proc else None
        first, self._first = self._first, None
        lines = iter(stdout.readline, b"") if stdout is not None and first is not None else iter(())
        to_rows = _row_maker(cols)
        loads = orjson.loads
        ncols = len(cols)
        count = 0
        error: UserFacingError | None = None
        batch, _ = self._slow_rows([first]) if first is not None else ([], None)
        while True:
            if not batch:
                raw = list(islice(lines, _STREAM_BATCH))
                if not raw:
                    break
                try:
                    objs = list(map(loads, raw))
                    if max(map(len, objs)) > ncols:
                        raise KeyError("extra keys")
                    batch = list(to_rows(objs))
                except (orjson.JSONDecodeError, TypeError, KeyError):
                    batch, error = self._slow_rows(raw)
                else:
                    if not set(map(type, chain.from_iterable(batch))) <= _TEXT_TYPES:
                        batch = list(map(_text_row, batch))
            if limit is not None and count + len(batch) > limit:
                batch = batch[: limit - count]
                self.truncated = True
                error = None  # the row at fault lies beyond the cut
            if batch:
                count += len(batch)
                self.row_count = count
                yield batch
                batch = []
            if error is not None:
                raise error
            if self.truncated:
                self._kill()
                break
            if self._stderr:
                self._raise_early_errors()
        self.row_count = count
        self._finish()

    def _slow_rows(self, items: list[Any]) -> tuple[list[Row], UserFacingError | None]:
        """Lines (or parsed objects) one at a time: the rows up to the first one at fault, and its error."""
        cols = self.columns
        ncols = len(cols)
        rows: list[Row] = []
        try:
            for item in items:
                obj = self._parse(item) if isinstance(item, bytes) else item
                if len(obj) > ncols:
                    extra = [k for k in obj if k not in cols]
                    if extra:
                        self._kill()
                        raise UserFacingError(
                            f"stackql returned columns the first row did not have ({', '.join(extra[:5])}); run "
                            "the query again.", ErrorKind.SCHEMA)
                rows.append(_text_row(tuple(map(obj.get, cols))))
        except UserFacingError as exc:
            return rows, exc
        return rows, None

    def _raise_early_errors(self) -> None:
        errors, _ = split_stderr("".join(self._stderr))
        if errors:
            self._kill()
            self._finish()

    def _finish(self, allow_errors_only: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        proc = self._proc
        assert proc is not None and self._running is not None
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(5)
        self._stderr_done.wait(5)
        self.elapsed_s = time.monotonic() - self._t0
        self._running.raise_if_stopped(self.limits)
        stderr = "".join(self._stderr)
        errors, messages = split_stderr(stderr)
        self.messages = tuple(redact(m, self._secrets) for m in messages)
        detail = redact(stderr.strip(), self._secrets)
        if rc > 0 and not self.truncated:
            # stackql exits 1 only when it refuses its configuration (--auth, --registry, flags).
            raise UserFacingError(
                f"stackql refused to run (exit code {rc}): {detail.splitlines()[0] if detail else 'no message'}. "
                "Check the provider auth settings and the stackql configuration, then retry.",
                ErrorKind.CONFIG, detail=detail)
        if errors:
            raise query_error(errors, self._secrets)
        if allow_errors_only or self.truncated:
            return
        if rc < 0:
            raise UserFacingError(
                f"stackql stopped unexpectedly (signal {-rc}). Retry; if it keeps happening the machine may be "
                "short of memory.", ErrorKind.UPSTREAM, detail=detail)


# ============================================================================ the engine


class Engine:
    """Runs StackQL through pystackql's binary: a warm `srv` for the IDE, `exec` children for jobs.

    Build one per process (see get_engine()); it is thread-safe. Credentials are passed per call as
    `provider_env` (env var name -> value) and only ever reach a child process's environment.
    """

    def __init__(self, download_dir: Path, app_root: Path, *, install_timeout_s: float = 120.0,
                 default_limits: QueryLimits | None = None, pool_size: int = 4,
                 srv_start_timeout_s: float = 30.0, cancel_grace_s: float = 2.0,
                 describe_ttl_s: float = 300.0):
        self.download_dir = Path(download_dir)
        self.app_root = Path(app_root)
        self.install_timeout_s = install_timeout_s
        self.default_limits = default_limits or QueryLimits()
        self.pool_size = pool_size
        self.srv_start_timeout_s = srv_start_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self.describe_ttl_s = describe_ttl_s
        self._binary: BinaryInfo | None = None
        self._client: Any = None
        self._binary_lock = threading.Lock()
        self._srv: _Srv | None = None
        self._srv_lock = threading.Lock()
        self._fingerprint_key = os.urandom(32)  # fingerprints are comparable only within this process
        self._closed = False
        self._catalog: Any = None
        _ENGINES.add(self)

    @classmethod
    def from_settings(cls, settings: config.Settings | None = None) -> Engine:
        """An engine configured from settings (download dir, approot, limits, install timeout)."""
        s = settings or config.get_settings()
        return cls(s.stackql_download_dir, s.stackql_approot, install_timeout_s=s.stackql_install_timeout_s,
                   default_limits=QueryLimits.from_settings(s))

    # ---------------------------------------------------------------- binary
    def binary(self) -> BinaryInfo:
        """Provision the binary (once per process) and return it; raises ErrorKind.BINARY when impossible."""
        if self._binary is not None:
            return self._binary
        with self._binary_lock:
            if self._binary is None:
                self.download_dir.mkdir(parents=True, exist_ok=True)
                self.app_root.mkdir(parents=True, exist_ok=True)
                if not (self.download_dir / "stackql").exists():
                    self._provision()
                client = self._build_client()
                self._client = client
                self._binary = BinaryInfo(client.bin_path, client.version, client.sha, _global_flags(client.params))
                log.info("stackql binary ready version=%s path=%s", client.version, client.bin_path)
        return self._binary

    def _provision(self) -> None:
        # pystackql downloads with no timeout and exit(1)s on failure: let it do so in a child process.
        env = config.child_base_env()
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _PROVISION_CODE, str(self.download_dir)], env=env, cwd=self.download_dir,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.install_timeout_s)
        except subprocess.TimeoutExpired:
            raise UserFacingError(
                f"The stackql binary is not in {self.download_dir} and downloading it took longer than "
                f"{self.install_timeout_s:g} s. Put the stackql binary there (STACKQL_DOWNLOAD_DIR) or allow "
                "downloads from releases.stackql.io, then retry.", ErrorKind.BINARY) from None
        if proc.returncode != 0 or not (self.download_dir / "stackql").exists():
            reason = _last_error_line(proc.stdout + "\n" + proc.stderr) or f"exit code {proc.returncode}"
            raise UserFacingError(
                f"The stackql binary is not in {self.download_dir} and could not be downloaded ({reason}). Put the "
                "stackql binary there (STACKQL_DOWNLOAD_DIR) or allow downloads from releases.stackql.io, then "
                "retry.", ErrorKind.BINARY)
        log.info("stackql binary downloaded dir=%s seconds=%.1f", self.download_dir, time.monotonic() - started)

    def _build_client(self) -> Any:
        # The constructor runs `stackql --version` and calls exit(1) on any failure; a thread bounds it in time.
        outcome: dict[str, Any] = {}

        def build() -> None:
            out = io.StringIO()
            try:
                from pystackql import StackQL

                with contextlib.redirect_stdout(out):
                    outcome["client"] = StackQL(download_dir=str(self.download_dir), app_root=str(self.app_root),
                                                output="dict")
            except BaseException as exc:  # SystemExit from pystackql's exit(1)
                outcome["error"] = exc
            outcome["output"] = out.getvalue()

        worker = threading.Thread(target=build, name="pystackql-init", daemon=True)
        worker.start()
        worker.join(self.install_timeout_s)
        if worker.is_alive():
            raise UserFacingError(
                f"`stackql --version` did not answer within {self.install_timeout_s:g} s. Replace the binary in "
                f"{self.download_dir} with a working stackql release, then retry.", ErrorKind.BINARY)
        if "client" not in outcome:
            reason = _last_error_line(outcome.get("output", "")) or type(outcome.get("error")).__name__
            raise UserFacingError(
                f"The stackql binary in {self.download_dir} does not work ({reason}). Replace it with a current "
                "stackql release (or delete it to have it downloaded again), then retry.", ErrorKind.BINARY)
        return outcome["client"]

    # ---------------------------------------------------------------- catalog hook (column order)
    def describe_columns(self, fqn: str) -> list[str]:
        """DESCRIBE column order of a resource (batch path, cached), used to order `SELECT *` results."""
        if self._catalog is None:
            from stackql_inventory.services.catalog import Catalog

            self._catalog = Catalog(
                lambda q: self.run(q, None, QueryLimits(timeout_s=60.0), mode=Mode.BATCH), ttl_s=self.describe_ttl_s)
        return [c.name for c in self._catalog.columns(fqn)]

    # ---------------------------------------------------------------- public API
    def run(self, query: str, provider_env: Mapping[str, str] | None = None, limits: QueryLimits | None = None, *,
            run_id: str | None = None, mode: Mode | str = Mode.INTERACTIVE,
            auth: Mapping[str, Any] | None = None) -> QueryResult:
        """Run exactly one statement and return its result.

        `provider_env` maps env var names to credential values for the stackql child (None: a
        metadata query needing none; the interactive srv is reused as is). Interactive callers pass
        the variables of all configured providers: one warm server holds them all, and a different
        set restarts it. `auth` is stackql's `--auth` object (env var *names* only). `run_id` makes
        the query cancellable with cancel().
        """
        statement = prepare_statement(query)
        env = _check_env(provider_env)
        limits = limits or self.default_limits
        mode = Mode(mode)
        auth_json = _auth_json(auth)
        if mode is Mode.BATCH:
            with self._open_stream(statement, env, limits, run_id, auth_json) as s:
                rows = list(s.rows)
            return QueryResult(s.columns, rows, s.truncated, s.elapsed_s, s.messages, Mode.BATCH.value)
        return self._run_srv(statement, env if provider_env is not None else None, limits, run_id, auth_json)

    def stream(self, query: str, provider_env: Mapping[str, str] | None = None, limits: QueryLimits | None = None, *,
               run_id: str | None = None, auth: Mapping[str, Any] | None = None) -> RowStream:
        """Run one statement with `stackql exec --output jsonl` and stream its rows (batch path).

        `with engine.stream(q, env, limits) as s:` then iterate `s.rows` (tuples aligned to `s.columns`).
        Without `limits` there is no row cap (an inventory table must not be cut silently) and the
        configured timeout applies; the timeout covers the whole stream, the consumer's time included.
        """
        statement = prepare_statement(query)
        env = _check_env(provider_env)
        limits = limits or QueryLimits(row_limit=None, timeout_s=self.default_limits.timeout_s)
        return self._open_stream(statement, env, limits, run_id, _auth_json(auth))

    def close(self) -> None:
        """Stop the srv child; the engine may be used again afterwards (it restarts on demand)."""
        with self._srv_lock:
            srv, self._srv = self._srv, None
        if srv is not None:
            srv.stop()

    # ---------------------------------------------------------------- internals
    def _child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        child = config.child_base_env()
        child.update(env)
        return child

    def _open_stream(self, statement: str, env: dict[str, str], limits: QueryLimits, run_id: str | None,
                     auth_json: str | None) -> RowStream:
        return RowStream(self, statement, self._child_env(env), limits, run_id, auth_json, _secret_values(env))

    def _fingerprint(self, env: Mapping[str, str], auth_json: str | None) -> str:
        canonical = json.dumps([sorted(env.items()), auth_json], separators=(",", ":")).encode()
        return hmac.new(self._fingerprint_key, canonical, hashlib.sha256).hexdigest()

    @contextlib.contextmanager
    def _srv_lease(self, env: dict[str, str] | None, auth_json: str | None) -> Iterator[_Srv]:
        binary = self.binary()
        with self._srv_lock:
            srv = self._srv
            wanted = self._fingerprint(env or {}, auth_json) if env is not None else None
            if srv is None or not srv.alive or (wanted is not None and srv.fingerprint != wanted):
                argv = [binary.path, "srv", *binary.flags]
                if auth_json:
                    argv += ["--auth", auth_json]
                old = srv
                srv = _Srv(argv, self._child_env(env or {}), wanted or self._fingerprint({}, auth_json),
                           _secret_values(env), self.pool_size, self.srv_start_timeout_s)
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
            with self._srv_lock:
                srv.in_flight -= 1
                stop = srv.retired and srv.in_flight == 0
            if stop:
                srv.stop()

    @contextlib.contextmanager
    def _srv_connection(self, env: dict[str, str] | None, auth_json: str | None,
                        secrets: list[str]) -> Iterator[tuple[_Srv, Any]]:
        """A leased server and one of its connections; a server that stopped answering is replaced once.

        Nothing has been sent yet when connecting fails, so trying again on a fresh server is safe.
        """
        import psycopg2

        for attempt in (1, 2):
            with self._srv_lease(env, auth_json) as srv:
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

    def _discard(self, srv: _Srv) -> None:
        with self._srv_lock:
            if self._srv is srv:
                self._srv = None
            srv.retired = True

    def _run_srv(self, statement: str, env: dict[str, str] | None, limits: QueryLimits, run_id: str | None,
                 auth_json: str | None) -> QueryResult:
        import psycopg2
        import psycopg2.errors

        secrets = _secret_values(env)
        t0 = time.monotonic()
        with _registered(run_id, limits) as running, self._srv_connection(env, auth_json, secrets) as (srv, conn):
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
                rows = [_text_row(tuple(r)) for r in (raw[: limits.row_limit] if truncated else raw)]
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


# ============================================================================ process-wide default

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_default: Engine | None = None
_default_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine, configured from settings on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Engine.from_settings()
    return _default


def run(query: str, provider_env: Mapping[str, str] | None = None, limits: QueryLimits | None = None, *,
        run_id: str | None = None, mode: Mode | str = Mode.INTERACTIVE,
        auth: Mapping[str, Any] | None = None) -> QueryResult:
    """Run one statement on the process-wide engine (see Engine.run)."""
    return get_engine().run(query, provider_env, limits, run_id=run_id, mode=mode, auth=auth)


def stream(query: str, provider_env: Mapping[str, str] | None = None, limits: QueryLimits | None = None, *,
           run_id: str | None = None, auth: Mapping[str, Any] | None = None) -> RowStream:
    """Stream one statement's rows on the process-wide engine (see Engine.stream)."""
    return get_engine().stream(query, provider_env, limits, run_id=run_id, auth=auth)


def shutdown() -> None:
    """Stop every engine's srv child (also registered with atexit)."""
    for engine in list(_ENGINES):
        with contextlib.suppress(Exception):
            engine.close()


def reset() -> None:
    """Close and forget the process-wide engine (after a settings change, and in tests)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.close()


atexit.register(shutdown)
