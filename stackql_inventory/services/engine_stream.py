"""Batch path: one `stackql exec --output jsonl` child per query, its rows streamed as they are printed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain, islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from stackql_inventory.services.engine_columns import resolve_columns
from stackql_inventory.services.engine_errors import query_error, split_stderr
from stackql_inventory.services.engine_running import Running, registered
from stackql_inventory.services.engine_values import TEXT_TYPES, QueryLimits, Row, text_row
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

if TYPE_CHECKING:
    from stackql_inventory.services.engine import Engine

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
        self._registration: contextlib.AbstractContextManager[Running] | None = None
        self._running: Running | None = None
        self._first: dict[str, Any] | None = None
        self._rows: Iterator[Row] | None = None  # chained batches of _iterate
        self._finished = False
        self._t0 = 0.0

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> RowStream:
        self._t0 = time.monotonic()
        binary = self._engine.binary()
        self._registration = registered(self._run_id, self.limits)
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
                    if not set(map(type, chain.from_iterable(batch))) <= TEXT_TYPES:
                        batch = list(map(text_row, batch))
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
                rows.append(text_row(tuple(map(obj.get, cols))))
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
