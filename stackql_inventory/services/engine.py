"""StackQL query engine: owns pystackql and the stackql child processes (warm `srv` for the IDE, `exec` for jobs)."""

# Why not pystackql's execute(): it runs one shell string (quotes, `$`, backticks and newlines get
# mangled, `-- comments` swallow the rest of the query), hides every error as an empty result
# unless told otherwise, inherits (or shell-injects) credentials through the environment, and calls
# exit(1) when the binary is missing. pystackql is kept for what it does well: provisioning the
# binary (download into `download_dir`), reading its version, and the default flag set. Queries go
# to the binary as argv lists with a per-child `env=` dict, and results are read here.
#
# The engine's parts: engine_values (limits, results, text and typed values), engine_columns (SELECT
# order of a result), engine_errors (stackql's stderr as errors), engine_running (cancel and
# timeouts), engine_binary (provisioning), engine_srv (interactive path), engine_stream (batch path).
# Everything callers use is importable from here.

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackql_inventory import config
from stackql_inventory.services import sql_text
from stackql_inventory.services.engine_binary import BinaryInfo, binary_info, build_client, provision
from stackql_inventory.services.engine_columns import resolve_columns
from stackql_inventory.services.engine_errors import query_error, split_stderr
from stackql_inventory.services.engine_running import cancel, running_ids
from stackql_inventory.services.engine_srv import Srv, WarmSrv
from stackql_inventory.services.engine_stream import RowStream
from stackql_inventory.services.engine_values import Mode, QueryLimits, QueryResult, Row, to_dataframe
from stackql_inventory.services.errors import ErrorKind, UserFacingError, secret_values
from stackql_inventory.services.process_default import ProcessDefault

__all__ = [
    "BinaryInfo", "Engine", "Mode", "QueryLimits", "QueryResult", "Row", "RowStream", "cancel", "get_engine",
    "prepare_statement", "query_error", "reset", "resolve_columns", "run", "running_ids", "shutdown",
    "split_stderr", "stream", "to_dataframe",
]

log = logging.getLogger(__name__)


# ============================================================================ what a query may bring


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
        self._warm = WarmSrv(cancel_grace_s)
        self._fingerprint_key = os.urandom(32)  # fingerprints are comparable only within this process
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
                    provision(self.download_dir, self.install_timeout_s)
                client = build_client(self.download_dir, self.app_root, self.install_timeout_s)
                self._client = client
                self._binary = binary_info(client)
                log.info("stackql binary ready version=%s path=%s", client.version, client.bin_path)
        return self._binary

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
        self._warm.close()

    # ---------------------------------------------------------------- internals
    def _child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        child = config.child_base_env()
        child.update(env)
        return child

    def _open_stream(self, statement: str, env: dict[str, str], limits: QueryLimits, run_id: str | None,
                     auth_json: str | None) -> RowStream:
        return RowStream(self, statement, self._child_env(env), limits, run_id, auth_json, secret_values(env))

    def _fingerprint(self, env: Mapping[str, str], auth_json: str | None) -> str:
        canonical = json.dumps([sorted(env.items()), auth_json], separators=(",", ":")).encode()
        return hmac.new(self._fingerprint_key, canonical, hashlib.sha256).hexdigest()

    def _run_srv(self, statement: str, env: dict[str, str] | None, limits: QueryLimits, run_id: str | None,
                 auth_json: str | None) -> QueryResult:
        secrets = secret_values(env)
        wanted = self._fingerprint(env, auth_json) if env is not None else None

        def start(binary: BinaryInfo) -> Srv:
            argv = [binary.path, "srv", *binary.flags]
            if auth_json:
                argv += ["--auth", auth_json]
            return Srv(argv, self._child_env(env or {}), wanted or self._fingerprint({}, auth_json), secrets,
                       self.pool_size, self.srv_start_timeout_s)

        return self._warm.run(statement, limits, run_id, wanted=wanted, binary=self.binary, start=start,
                              secrets=secrets)


# ============================================================================ process-wide default

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_default: ProcessDefault[Engine] = ProcessDefault(Engine.from_settings)


def get_engine() -> Engine:
    """The process-wide engine, configured from settings on first use."""
    return _default.get()


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
    old = _default.reset()
    if old is not None:
        old.close()


atexit.register(shutdown)
