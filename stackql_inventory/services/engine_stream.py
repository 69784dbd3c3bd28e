"""Batch path: one `stackql exec --output jsonl` child per query, its rows streamed as they are printed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
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
_BLOCK_BYTES = 1 << 20  # stackql output read at a time (whole lines of it are handed on)


def _first_lines(block: bytes, n: int) -> bytes:
    """The first `n` lines of a block (with their newlines)."""
    end = 0
    for _ in range(n):
        end = block.find(b"\n", end) + 1
        if not end:
            return block
    return block[:end]


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
        self._to_rows: Callable[[list[dict[str, Any]]], Iterator[Row]] = _row_maker([])
        self._entered = False
        self._claimed = False
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
            self._to_rows = _row_maker(self.columns)
            self._entered = True
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
        """The rows, one tuple each (consume either `rows` or `batches()`, not both)."""
        if self._rows is None:
            self._claim()
            self._rows = chain.from_iterable(self._iterate())
        return self._rows

    def batches(self, convert: Callable[[bytes, int], Any] | None = None) -> Iterator[Any]:
        """The rows in batches: lists of row tuples, or what `convert(block, lines)` made of a block of
        `lines` complete JSON Lines (when it answers None the block is parsed into lists of rows).

        For consumers that can take stackql's JSON Lines in bulk (the inventory writer's COPY);
        errors, the row limit, `row_count` and cancellation work as with `rows`.
        """
        self._claim()
        return self._iterate(convert)

    def _claim(self) -> None:
        if not self._entered:
            raise RuntimeError("use the stream inside `with engine.stream(...) as s:`")
        if self._claimed:
            raise RuntimeError("a stream's rows can be consumed once: use either `rows` or `batches()`")
        self._claimed = True

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

    def _iterate(self, convert: Callable[[bytes, int], Any] | None = None) -> Iterator[Any]:
        """The rows in batches (the `rows` property chains them; `batches` hands them out).

        stackql's output is read in blocks of complete lines (`_BLOCK_BYTES`). With `convert`, a
        block goes to convert(block, lines) first and its answer is yielded; when it answers None
        (and always without `convert`) the block's lines are parsed here, `_STREAM_BATCH` at a
        time: by C loops (orjson, itemgetter, set(map(type, …))), so Python runs per batch, not per
        row. A batch that is not plain (a line that is not a JSON object, a row with keys the first
        row did not have, a value that is not a string or null) is redone row by row: it yields the
        rows before the one at fault, then raises. The row limit cuts a block at a line.
        """
        limit = self.limits.row_limit
        first, self._first = self._first, None
        count = 0
        if first is not None:
            batch, error = self._slow_rows([first])
            count = self.row_count = len(batch)
            if limit is not None and count > limit:
                batch, error, self.truncated = batch[:limit], None, True
                count = self.row_count = len(batch)
            if batch:
                yield batch
            if error is not None:
                raise error
            for block, lines in self._blocks(limit) if not self.truncated else ():
                if limit is not None and count + lines > limit:
                    lines = limit - count
                    block = _first_lines(block, lines)
                    self.truncated = True
                converted = convert(block, lines) if convert is not None and lines else None
                if converted is not None:
                    count += lines
                    self.row_count = count
                    yield converted
                else:
                    raw = block.split(b"\n")
                    if raw[-1] == b"":
                        raw.pop()
                    for i in range(0, len(raw), _STREAM_BATCH):
                        batch, error = self._parse_lines(raw[i:i + _STREAM_BATCH])
                        if batch:
                            count += len(batch)
                            self.row_count = count
                            yield batch
                        if error is not None:
                            raise error
                if self.truncated:
                    self._kill()
                    break
                if self._stderr:
                    self._raise_early_errors()
        self.row_count = count
        self._finish()

    def _blocks(self, limit: int | None) -> Iterator[tuple[bytes, int]]:
        """stackql's remaining output as (block of complete lines, how many); the last line may lack its newline.

        A block is about `_BLOCK_BYTES`; under a row limit it ends as soon as it holds one line more
        than the limit still allows (enough to know the result is cut), without waiting for more output.
        """
        stdout = self._proc.stdout if self._proc else None
        if stdout is None:
            return
        carry = b""
        eof = False
        while not eof:
            pieces, size, seen = [carry], len(carry), carry.count(b"\n")
            want = None if limit is None else limit - self.row_count + 1
            while (size < _BLOCK_BYTES or not seen) and (want is None or seen < want):
                data = stdout.read1(max(_BLOCK_BYTES - size, 1 << 16))
                if not data:
                    eof = True
                    break
                pieces.append(data)
                size += len(data)
                seen += data.count(b"\n")
            data = b"".join(pieces)
            cut = len(data) if eof else data.rfind(b"\n") + 1
            block, carry = data[:cut], data[cut:]
            if block:
                yield block, seen + (not block.endswith(b"\n"))

    def _parse_lines(self, raw: list[bytes]) -> tuple[list[Row], UserFacingError | None]:
        """Up to `_STREAM_BATCH` lines → (rows, None), or the rows before the first line at fault and its error."""
        cols = self.columns
        try:
            objs = list(map(orjson.loads, raw))
            if max(map(len, objs)) > len(cols):
                raise KeyError("extra keys")
            batch = list(self._to_rows(objs))
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return self._slow_rows(raw)
        if not set(map(type, chain.from_iterable(batch))) <= TEXT_TYPES:
            batch = list(map(text_row, batch))
        return batch, None

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
