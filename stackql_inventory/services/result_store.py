"""Server-side store of IDE results: per-session LRU under a memory cap, served one sorted/filtered window at a time."""

# Why here and not in rx.State: a state var is serialised to the browser, and a 100,000-row result
# is tens of megabytes. The browser asks for the window it shows (services → api.py → grid).
#
# Each row is kept as its JSON array, encoded once by orjson: about the size of the text itself (the
# engine's list of str tuples takes 2.5× more), and a window is answered by joining bytes. Encoding
# 100k rows takes ~0.2 s, so a new result is served from the engine's tuples at first and compacted
# a moment later in a background thread, after the browser has its first rows. Sorting and
# filtering read only the columns they touch; the last few orderings are cached per result.

from __future__ import annotations

import csv
import io
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from stackql_inventory import config
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.process_default import ProcessDefault

# Largest window one request may ask for (the grid asks for blocks of 200).
MAX_WINDOW = 1000
# Orderings (sort + filter combinations) remembered per result.
_VIEW_CACHE = 4
# Bytes Python spends per stored row beyond its JSON: the bytes object header and the list slot.
_ROW_OVERHEAD = 33 + 8
_SAMPLE = 500
# Seconds before a new result is compacted (its first window goes out before the encoding starts).
COMPACT_DELAY_S = 1.0

_INT_RE = re.compile(r"-?(0|[1-9]\d*)")
_NUMBER_RE = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?")
_BOOLS = {"true", "false"}

TEXT_FILTERS = {"contains", "notContains", "equals", "notEqual", "startsWith", "endsWith", "blank", "notBlank"}
NUMBER_FILTERS = {"equals", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual",
                  "inRange", "blank", "notBlank"}


def infer_type(values: Sequence[str | None]) -> str:
    """`number`, `boolean`, `timestamp`, `json` or `text`, judged on up to the first 500 non-null values."""
    sample = [v for v in values[: _SAMPLE * 4] if v is not None][:_SAMPLE]
    if not sample:
        return "text"
    if all(_NUMBER_RE.fullmatch(v) for v in sample):
        return "number"
    if all(v.lower() in _BOOLS for v in sample):
        return "boolean"
    if all(_TS_RE.fullmatch(v) for v in sample):
        return "timestamp"
    if all(v[:1] in ("{", "[") for v in sample):
        try:
            for v in sample[:20]:
                orjson.loads(v)
            return "json"
        except orjson.JSONDecodeError:
            return "text"
    return "text"


def _as_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Window:
    """One window of a (sorted, filtered) result: `payload` is the JSON the grid receives."""

    start: int
    total: int  # rows after filtering
    rows: int  # rows in this window
    payload: bytes  # {"total": n, "rows": [[...], ...]}


@dataclass(eq=False)
class StoredResult:
    """A finished query's rows, held for one browser session."""

    id: str
    session: str  # the browser session (Reflex client token) that ran it
    owner: str  # the user who ran it (identity.user)
    statement: str
    provider: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    truncated: bool
    elapsed_s: float
    messages: tuple[str, ...]
    created_at: float
    _rows: list[Any] = field(repr=False)  # tuples from the engine until compacted, then JSON bytes
    nbytes: int = 0
    _compact: bool = False
    _views: OrderedDict[str, list[int]] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def compacted(self) -> bool:
        """True once the rows are held as encoded JSON."""
        return self._compact

    def compact(self) -> None:
        """Encode the rows as JSON (a third of the memory of tuples of str); idempotent."""
        with self._lock:
            if self._compact:
                return
            raw = self._rows
        # orjson returns each result in a 4 KiB allocation that is never shrunk; a right-sized copy
        # keeps 100k rows at ~30 MB instead of ~400 MB (measured by RSS).
        encoded = [memoryview(orjson.dumps(r)).tobytes() for r in raw]
        with self._lock:
            self._rows, self._compact = encoded, True
            self.nbytes = _size(encoded, self.columns)

    # Helpers take a snapshot of `_rows` (compaction swaps the list; each list is one representation).
    @staticmethod
    def _decoded(items: list[Any]) -> list[tuple[str | None, ...]]:
        if items and isinstance(items[0], bytes):
            return [tuple(orjson.loads(b)) for b in items]
        return [tuple(r) for r in items]

    @staticmethod
    def _encoded(items: list[Any]) -> list[bytes]:
        return items if items and isinstance(items[0], bytes) else [orjson.dumps(r) for r in items]

    def rows(self, start: int = 0, end: int | None = None) -> list[tuple[str | None, ...]]:
        """Rows `start:end` in the original order, as tuples aligned with `columns`."""
        return self._decoded(self._rows[start:end])

    def head(self, n: int) -> list[tuple[str | None, ...]]:
        """The first `n` rows (for the assistant's Interpret mode)."""
        return self.rows(0, max(0, n))

    # ---------------------------------------------------------------- windows
    def window(self, start: int, end: int, sort: Any = None, filters: Any = None) -> Window:
        """Rows `start:end` after applying the grid's filter model and sort model."""
        if not isinstance(start, int) or not isinstance(end, int) or start < 0 or end < start:
            raise UserFacingError("The requested rows are out of range: start and end must be row numbers, "
                                  "start ≤ end.", ErrorKind.VALIDATION)
        end = min(end, start + MAX_WINDOW)
        order = self._view(_parse_sort(sort, self.columns), _parse_filters(filters, self.columns))
        rows = self._rows
        if order is None:
            chosen = rows[start:end]
            total = len(rows)
        else:
            chosen = [rows[i] for i in order[start:end]]
            total = len(order)
        chosen = self._encoded(chosen)
        payload = b'{"total":%d,"rows":[' % total + b",".join(chosen) + b"]}"
        return Window(start, total, len(chosen), payload)

    def _view(self, sort: list[tuple[int, bool]], filters: list[tuple[int, dict[str, Any]]]) -> list[int] | None:
        if not sort and not filters:
            return None
        key = orjson.dumps([sort, filters], option=orjson.OPT_SORT_KEYS).decode()
        with self._lock:
            cached = self._views.get(key)
            if cached is not None:
                self._views.move_to_end(key)
                return cached
        order = self._compute(sort, filters)
        with self._lock:
            self._views[key] = order
            while len(self._views) > _VIEW_CACHE:
                self._views.popitem(last=False)
        return order

    def _column(self, index: int) -> list[str | None]:
        rows = self._rows
        if rows and isinstance(rows[0], bytes):
            return [orjson.loads(b)[index] for b in rows]
        return [r[index] for r in rows]

    def _compute(self, sort: list[tuple[int, bool]], filters: list[tuple[int, dict[str, Any]]]) -> list[int]:
        order = list(range(self.row_count))
        for col, model in filters:
            values = self._column(col)
            test = _predicate(model, numeric=self.types[col] == "number")
            order = [i for i in order if test(values[i])]
        for col, descending in reversed(sort):  # stable sorts: the last key first
            values = self._column(col)
            if self.types[col] == "number":
                keys: list[Any] = [_as_number(v) for v in values]
            elif self.types[col] == "boolean":
                keys = [None if v is None else v.lower() == "true" for v in values]
            else:
                keys = values
            present = [i for i in order if keys[i] is not None]
            missing = [i for i in order if keys[i] is None]
            present.sort(key=keys.__getitem__, reverse=descending)
            order = present + missing  # NULLs last in both directions
        return order

    # ---------------------------------------------------------------- export
    def iter_csv(self, chunk_rows: int = 2000) -> Iterator[bytes]:
        """The whole result as CSV (header row first; NULL as an empty field), in chunks."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(self.columns)
        rows = self._rows
        for start in range(0, len(rows), chunk_rows):
            writer.writerows(["" if v is None else v for v in r] for r in self._decoded(rows[start:start + chunk_rows]))
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
        if buf.tell():
            yield buf.getvalue().encode()
        if not rows:
            yield b""

    def iter_json(self, chunk_rows: int = 2000) -> Iterator[bytes]:
        """The whole result as a JSON array of objects; JSON cells are embedded as JSON, not as text."""
        names = _unique_names(self.columns)
        json_cols = {i for i, t in enumerate(self.types) if t == "json"}
        yield b"["
        first = True
        rows = self._rows
        for start in range(0, len(rows), chunk_rows):
            parts = []
            for row in self._decoded(rows[start:start + chunk_rows]):
                obj: dict[str, Any] = {}
                for i, (name, value) in enumerate(zip(names, row)):
                    if i in json_cols and value is not None:
                        try:
                            value = orjson.Fragment(orjson.dumps(orjson.loads(value)))
                        except orjson.JSONDecodeError:
                            pass
                    obj[name] = value
                parts.append(orjson.dumps(obj))
            if parts:
                yield (b"\n" if first else b",\n") + b",\n".join(parts)
                first = False
        yield b"\n]\n"


def _size(encoded: Sequence[bytes], columns: Sequence[str]) -> int:
    return sum(map(len, encoded)) + _ROW_OVERHEAD * len(encoded) + sum(len(c) + 64 for c in columns) + 512


def _estimated_size(rows: Sequence[Sequence[str | None]], columns: Sequence[str]) -> int:
    """The compacted size, estimated from up to 1,000 rows spread over the result."""
    if not rows:
        return _size([], columns)
    step = max(1, len(rows) // 1000)
    sample = [orjson.dumps(rows[i]) for i in range(0, len(rows), step)]
    return int(sum(map(len, sample)) / len(sample) * len(rows)) + _size([], columns) + _ROW_OVERHEAD * len(rows)


def _unique_names(columns: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for c in columns:
        n = seen.get(c, 0)
        seen[c] = n + 1
        names.append(c if n == 0 else f"{c}_{n + 1}")
    return names


# ============================================================================ grid models


def _column_index(col_id: Any, columns: Sequence[str]) -> int:
    try:
        index = int(col_id)
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(columns):
        raise UserFacingError(f"The result has no column {str(col_id)[:40]!r}: reload the results and retry.",
                              ErrorKind.VALIDATION)
    return index


def _parse_sort(sort: Any, columns: Sequence[str]) -> list[tuple[int, bool]]:
    """AG Grid's sort model `[{"colId": "3", "sort": "asc"}]` as (column index, descending)."""
    if not sort:
        return []
    if not isinstance(sort, list) or len(sort) > len(columns):
        raise UserFacingError("The sort order is not understood: reset the sort and retry.", ErrorKind.VALIDATION)
    parsed = []
    for item in sort:
        if not isinstance(item, Mapping) or item.get("sort") not in ("asc", "desc"):
            raise UserFacingError("The sort order is not understood: reset the sort and retry.", ErrorKind.VALIDATION)
        parsed.append((_column_index(item.get("colId"), columns), item["sort"] == "desc"))
    return parsed


def _parse_filters(filters: Any, columns: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    """AG Grid's filter model `{"3": {...}}` as (column index, model), validated."""
    if not filters:
        return []
    if not isinstance(filters, Mapping):
        raise UserFacingError("The column filter is not understood: clear the filters and retry.",
                              ErrorKind.VALIDATION)
    parsed = []
    for col_id, model in sorted(filters.items()):
        index = _column_index(col_id, columns)
        _predicate(model, numeric=False, check_only=True)
        parsed.append((index, dict(model)))
    return parsed


def _bad_filter() -> UserFacingError:
    return UserFacingError("The column filter is not understood: clear the filters and retry.", ErrorKind.VALIDATION)


def _predicate(model: Any, *, numeric: bool, check_only: bool = False) -> Any:
    """A test for one column's values from AG Grid's text/number filter model (with AND/OR conditions)."""
    if not isinstance(model, Mapping):
        raise _bad_filter()
    if "conditions" in model:
        conditions = model.get("conditions")
        operator = model.get("operator", "AND")
        if not isinstance(conditions, list) or not conditions or len(conditions) > 4 or operator not in ("AND", "OR"):
            raise _bad_filter()
        tests = [_predicate(c, numeric=numeric, check_only=check_only) for c in conditions]
        if check_only:
            return None
        if operator == "AND":
            return lambda v: all(t(v) for t in tests)
        return lambda v: any(t(v) for t in tests)
    kind = model.get("filterType")
    op = model.get("type")
    if kind == "number":
        if op not in NUMBER_FILTERS:
            raise _bad_filter()
        return None if check_only else _number_test(op, model.get("filter"), model.get("filterTo"))
    if kind == "text":
        if op not in TEXT_FILTERS:
            raise _bad_filter()
        needle = model.get("filter")
        if op not in ("blank", "notBlank") and not isinstance(needle, str):
            raise _bad_filter()
        return None if check_only else _text_test(op, needle)
    raise _bad_filter()


def _number_test(op: str, value: Any, value_to: Any) -> Any:
    if op == "blank":
        return lambda v: v is None or v == ""
    if op == "notBlank":
        return lambda v: v is not None and v != ""
    try:
        a = float(value)
        b = float(value_to) if op == "inRange" else 0.0
    except (TypeError, ValueError):
        raise _bad_filter() from None

    def test(v: str | None) -> bool:
        x = _as_number(v)
        if x is None:
            return op == "notEqual"
        return {
            "equals": x == a, "notEqual": x != a, "lessThan": x < a, "lessThanOrEqual": x <= a,
            "greaterThan": x > a, "greaterThanOrEqual": x >= a, "inRange": a <= x <= b,
        }[op]

    return test


def _text_test(op: str, needle: str | None) -> Any:
    if op == "blank":
        return lambda v: v is None or v == ""
    if op == "notBlank":
        return lambda v: v is not None and v != ""
    n = (needle or "").casefold()
    tests = {
        "contains": lambda v: v is not None and n in v.casefold(),
        "notContains": lambda v: v is None or n not in v.casefold(),
        "equals": lambda v: v is not None and v.casefold() == n,
        "notEqual": lambda v: v is None or v.casefold() != n,
        "startsWith": lambda v: v is not None and v.casefold().startswith(n),
        "endsWith": lambda v: v is not None and v.casefold().endswith(n),
    }
    return tests[op]


# ============================================================================ the store


@dataclass(frozen=True)
class StoreStats:
    """What the store holds."""

    results: int
    bytes: int
    sessions: int


class ResultStore:
    """Results of every browser session, least recently used evicted first.

    At most `per_session` results per session, and `max_bytes` in all (the newest result is always
    kept, even alone above the cap). Ids are unguessable; `get` also checks the owner.
    """

    def __init__(self, max_bytes: int, per_session: int, compact_delay_s: float | None = COMPACT_DELAY_S):
        if max_bytes < 1 or per_session < 1:
            raise ValueError("the result store needs a positive memory cap and per-session limit")
        self.max_bytes = max_bytes
        self.per_session = per_session
        # None: compact inside put() (tests, benchmarks); else in a background thread after this delay.
        self.compact_delay_s = compact_delay_s
        self._results: OrderedDict[str, StoredResult] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: config.Settings | None = None) -> ResultStore:
        s = settings or config.get_settings()
        return cls(max_bytes=s.result_cache_mb * 1024 * 1024, per_session=s.results_per_session)

    def put(self, *, session: str, owner: str, columns: Sequence[str], rows: Sequence[Sequence[str | None]],
            statement: str = "", provider: str = "", truncated: bool = False, elapsed_s: float = 0.0,
            messages: Sequence[str] = ()) -> StoredResult:
        """Keep a result for `session`; returns it with its new id."""
        if not session:
            raise UserFacingError("The browser session is unknown: reload the page, then run the query again.",
                                  ErrorKind.VALIDATION)
        columns = tuple(columns)
        rows = list(rows)
        by_column = list(zip(*rows[: _SAMPLE * 4])) if rows else [() for _ in columns]
        types = tuple(infer_type(vals) for vals in by_column) if columns else ()
        stored = StoredResult(
            id=secrets.token_urlsafe(18), session=session, owner=owner, statement=statement, provider=provider,
            columns=columns, types=types, truncated=truncated, elapsed_s=elapsed_s, messages=tuple(messages),
            created_at=time.time(), _rows=rows, nbytes=_estimated_size(rows, columns))
        nbytes = stored.nbytes
        with self._lock:
            self._results[stored.id] = stored
            self._bytes += nbytes
            mine = [r for r in self._results.values() if r.session == session]
            for old in mine[: max(0, len(mine) - self.per_session)]:
                self._evict(old.id)
            for old_id in list(self._results):
                if self._bytes <= self.max_bytes or old_id == stored.id:
                    break
                self._evict(old_id)
        if self.compact_delay_s is None:
            self._compact(stored)
        else:
            timer = threading.Timer(self.compact_delay_s, self._compact, args=(stored,))
            timer.daemon = True
            timer.start()
        return stored

    def _compact(self, stored: StoredResult) -> None:
        with self._lock:
            if stored.id not in self._results:
                return  # evicted meanwhile
            before = stored.nbytes
        stored.compact()
        with self._lock:
            if stored.id in self._results:
                self._bytes += stored.nbytes - before

    def _evict(self, result_id: str) -> None:
        old = self._results.pop(result_id, None)
        if old is not None:
            self._bytes -= old.nbytes

    def get(self, result_id: str, *, owner: str | None = None) -> StoredResult:
        """The result `result_id` (marked recently used); NOT_FOUND when evicted, unknown, or another user's."""
        with self._lock:
            found = self._results.get(result_id) if isinstance(result_id, str) else None
            if found is not None and (owner is None or found.owner == owner):
                self._results.move_to_end(result_id)
                return found
        raise UserFacingError(
            "This result is no longer held on the server (it keeps the last few results of each session, within a "
            "memory limit all sessions share): run the query again.", ErrorKind.NOT_FOUND)

    def drop(self, result_id: str) -> None:
        """Forget one result."""
        with self._lock:
            self._evict(result_id)

    def drop_session(self, session: str) -> None:
        """Forget every result of a session."""
        with self._lock:
            for rid in [rid for rid, r in self._results.items() if r.session == session]:
                self._evict(rid)

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(len(self._results), self._bytes, len({r.session for r in self._results.values()}))


# ============================================================================ process-wide default

_default: ProcessDefault[ResultStore] = ProcessDefault(ResultStore.from_settings)


def get_store() -> ResultStore:
    """The process-wide store, sized from settings on first use."""
    return _default.get()


def get(result_id: str, *, owner: str | None = None) -> StoredResult:
    """A result of the process-wide store (see ResultStore.get); the assistant panel reads results this way."""
    return get_store().get(result_id, owner=owner)


def reset() -> None:
    """Forget the process-wide store (after a settings change, and in tests)."""
    _default.reset()
