"""COPY source: a result serialised to COPY's text format while the COPY runs (the writer's hot path).

The writer's input comes in batches, each one of:

- a list of rows (tuples of str | None), encoded here in Python (`CopySource` batches plain row
  iterables itself);
- an `Encoded` batch: a block of stackql's JSON Lines that `JsonLinesToCopy` already turned into
  COPY text with pyarrow (its JSON reader and compute kernels, in C++), without a Python object per
  value. The engine's `RowStream.batches(convert)` hands it blocks of complete lines and parses a
  block into rows itself when the converter declines it, so an odd block (a number where stackql
  promises a string, a row with keys the first row lacked, a NUL, bytes that are not UTF-8, broken
  JSON) takes the row path and gets the row path's exact errors.

Both kinds of batch go into one COPY in the text format (NULL `\\N`; backslash, tab, newline and
carriage return escaped), which PostgreSQL parses faster than CSV.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice, repeat
from typing import Any, NamedTuple, Protocol

from stackql_inventory.services.errors import ErrorKind, UserFacingError

BATCH_ROWS = 2000      # rows encoded per chunk when the input is plain rows
_QUEUE_CHUNKS = 64     # chunks encoded ahead of the COPY (rows: 2,000 each; JSON blocks: ~1 MiB each)
COPY_READ_SIZE = 1 << 20

Row = Sequence[str | None]

_NULL_GET = {None: "\x00"}.get
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_ESCAPE_PASSES = ((b"\\", "\\\\"), (b"\t", "\\t"), (b"\n", "\\n"), (b"\r", "\\r"))  # backslash first


class Encoded(NamedTuple):
    """A batch already in COPY's text format (constant columns included) and how many rows it holds."""

    data: bytes
    rows: int


Batch = list[Row] | Encoded


class RowBatches(Protocol):
    """A result that hands out its rows in batches (the engine's RowStream)."""

    def batches(self, convert: Callable[[bytes, int], Encoded | None] | None = None) -> Iterator[Any]: ...


def nul_error(column: str) -> UserFacingError:
    return UserFacingError(
        f"Column {column!r} has a value with a NUL character (\\u0000), which PostgreSQL text cannot hold: remove "
        "it in the query (e.g. replace(col, char(0), '')), then run again.", ErrorKind.SCHEMA)


def row_batches(rows: Iterable[Row], size: int = BATCH_ROWS) -> Iterator[list[Row]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


class JsonLinesToCopy:
    """A block of stackql JSON Lines → `Encoded` COPY text for these columns plus constant columns, or None.

    None (the caller parses the block into rows instead) unless every line is a JSON object whose
    keys are among `columns` and whose values are strings or null, the bytes are UTF-8 and no value
    holds a NUL: then the text is exactly what the row path would send. Missing keys are NULL, as on
    the row path. pyarrow runs single-threaded: the other core belongs to PostgreSQL's COPY.
    """

    def __init__(self, columns: Sequence[str], constants: Sequence[str] = ()):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pa_json

        self._pa, self._pc, self._json = pa, pc, pa_json
        self._usable = bool(columns) and len(set(columns)) == len(columns)
        schema = pa.schema([pa.field(c, pa.string()) for c in columns]) if self._usable else None
        self._parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        self._null = pa.scalar("\\N")
        self._end = pa.scalar("".join("\t" + c.translate(_ESCAPES) for c in constants)[1:] + "\n") \
            if constants else None

    def __call__(self, block: bytes, lines: int) -> Encoded | None:
        if not self._usable or b"\\u0000" in block:
            return None
        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                return None
        pa, pc = self._pa, self._pc
        try:
            table = self._json.read_json(
                pa.BufferReader(block), parse_options=self._parse,
                read_options=self._json.ReadOptions(use_threads=False, block_size=len(block) + 1))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != lines:  # blank lines, or two objects on one line
            return None
        cells = [self._escape(column) for column in table.combine_chunks().columns]
        if self._end is None:
            cells[-1] = pc.binary_join_element_wise(cells[-1], "", "\n")
        else:
            cells.append(self._end)
        joined = pc.binary_join_element_wise(*cells, "\t")  # one string per row: its COPY line
        if joined.type != pa.string() or joined.offset:
            return None
        # The rows' bytes lie back to back in the data buffer: its first offsets[lines] bytes are the COPY text.
        offsets, data = joined.buffers()[1:3]
        end = int.from_bytes(memoryview(offsets)[4 * lines:4 * lines + 4], "little")
        return Encoded(data[:end].to_pybytes(), lines)

    def _escape(self, column: Any) -> Any:
        """A column's values in COPY text: special characters escaped (only where a value has them), NULL as \\N."""
        values = column.chunk(0)
        data = values.buffers()[2]
        if data is not None and data.size:
            raw = data.to_pybytes()  # memchr over the column's bytes decides which passes are needed
            for char, escaped in _ESCAPE_PASSES:
                if char in raw:
                    values = self._pc.replace_substring(values, char.decode(), escaped)
        return self._pc.fill_null(values, self._null) if values.null_count else values


class _SourceFailed(Exception):
    """Raised into psycopg2's COPY loop; the real exception is kept on the source."""


class CopySource:
    """A file-like object for `copy_expert(COPY … FROM STDIN)`: batches encoded by a producer thread.

    The producer pulls batches (reading and converting stackql's output happens there, in the
    engine's iterator) and encodes them while the caller's thread is inside libpq sending earlier
    chunks (psycopg2 and pyarrow let go of the GIL), so Python's work and the server's overlap
    instead of taking turns; a bounded queue keeps at most `_QUEUE_CHUNKS` chunks in memory.

    `Encoded` batches pass through; row batches are encoded by `encode`. `constants` are appended to
    every row as further columns.
    """

    def __init__(self, batches: Iterable[Batch], columns: Sequence[str], constants: Sequence[str] = ()):
        self._batches = iter(batches)
        self._columns = list(columns)
        self._ncols = len(self._columns)
        suffix = "".join("\t" + c.translate(_ESCAPES) for c in constants)
        if not self._columns:
            suffix = suffix[1:]  # no data columns: the constants are the whole row
        self._sep = suffix + "\n"
        self._tabs_per_row = max(self._ncols - 1, 0) + suffix.count("\t")
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self.rows = 0
        self.error: BaseException | None = None

    @classmethod
    def from_rows(cls, rows: Iterable[Row], columns: Sequence[str], constants: Sequence[str] = ()) -> CopySource:
        return cls(row_batches(rows), columns, constants)

    def start(self) -> None:
        """Start encoding ahead (idempotent); read() starts it too."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="inventory-writer-encode", daemon=True)
            self._thread.start()

    # psycopg2 calls read() until it returns an empty value.
    def read(self, size: int = -1) -> bytes:
        if self._finished:
            return b""
        try:
            self.start()
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                self._finished = True
            return item
        except BaseException as exc:  # stream errors, cancellation: keep them, abort the COPY
            self.error = exc
            self.stop()
            raise _SourceFailed("the result stream failed") from None

    def count_only(self) -> int:
        """Consume the batches without encoding them (a result with no columns): the row count."""
        for batch in self._batches:
            self.rows += batch.rows if isinstance(batch, Encoded) else len(batch)
        return self.rows

    def stop(self) -> None:
        """Stop the producer after a failure (it ends by itself when the batches run out).

        Not joined: it may be waiting for stackql, which the caller's `with engine.stream(...)`
        kills on the way out; the thread then finds the stop flag and ends.
        """
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()  # unblock a producer waiting for room

    def join(self) -> None:
        """Wait for the producer after the last chunk was read (it has nothing left to do)."""
        if self._thread is not None:
            self._thread.join()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._next_chunk()
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the COPY's thread, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _next_chunk(self) -> bytes:
        for batch in self._batches:
            if isinstance(batch, Encoded):
                self.rows += batch.rows
                return batch.data
            if batch:
                self.rows += len(batch)
                return self.encode(batch)
        return b""

    def encode(self, batch: list[Row]) -> bytes:
        """Rows → COPY text lines (constants appended).

        Joined with tabs and newlines in C (`str.join`); counting the separators afterwards proves no
        value contained one, so the common batch needs no per-value escaping. A batch with tabs,
        newlines, carriage returns or NULs inside values, non-text values or rows of the wrong length
        takes the per-value path.
        """
        tj = "\t".join
        get = _NULL_GET
        try:
            body = self._sep.join([tj(map(get, r, r)) if None in r else tj(r) for r in batch]) + self._sep
        except TypeError:  # a value that is not text: the engine promises str | None
            return self._encode_slow(batch)
        n = len(batch)
        if body.count("\t") != n * self._tabs_per_row or body.count("\n") != n or "\r" in body \
                or set(map(len, batch)) != {self._ncols}:
            return self._encode_slow(batch)
        nuls = body.count("\x00")
        if nuls and nuls != sum(map(tuple.count, map(tuple, batch), repeat(None))):
            return self._encode_slow(batch)
        if "\\" in body:
            body = body.replace("\\", "\\\\")
        if nuls:
            body = body.replace("\x00", "\\N")
        return body.encode("utf-8", "surrogatepass")

    def _encode_slow(self, batch: list[Row]) -> bytes:
        out = []
        first = self.rows - len(batch) + 1
        for i, row in enumerate(batch):
            if len(row) != self._ncols:
                raise UserFacingError(
                    f"Row {first + i} of the result has {len(row)} values for {self._ncols} columns; run the query "
                    "again.", ErrorKind.SCHEMA)
            cells = []
            for name, value in zip(self._columns, row):
                if value is None:
                    cells.append("\\N")
                    continue
                if not isinstance(value, str):
                    value = str(value)
                if "\x00" in value:
                    raise nul_error(name)
                cells.append(value.translate(_ESCAPES))
            out.append("\t".join(cells))
        return (self._sep.join(out) + self._sep).encode("utf-8", "surrogatepass")
