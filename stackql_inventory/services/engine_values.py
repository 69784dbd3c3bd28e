"""Query values: limits, results, stackql's values as text, and typed DataFrames of them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any

import orjson

from stackql_inventory import config
from stackql_inventory.services.errors import ErrorKind, UserFacingError

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


# ============================================================================ text


def to_text(value: Any) -> str | None:
    """One stackql value as text: strings pass, JSON structures are re-encoded, Go sql.Null* unwrapped."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "Valid" in value and len(value) <= 2:
        if not value.get("Valid"):
            return None
        inner = next((v for k, v in value.items() if k != "Valid"), None)
        return to_text(inner)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, (int, float)):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


TEXT_TYPES = frozenset({str, type(None)})  # what a Row holds


def text_row(values: tuple[Any, ...]) -> Row:
    """A row of stackql values as text (see to_text); a row that is text already is returned as is."""
    for v in values:
        if v is not None and v.__class__ is not str:
            return tuple(to_text(x) for x in values)
    return values


# ============================================================================ typed DataFrames

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
