"""Display formatting shared by pages (pure functions, no reflex)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def timestamp(dt: datetime | None, *, tz: timezone | None = None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """`2026-11-26 17:41 UTC` (or `fmt`), in UTC unless `tz` is given (naive times are UTC); '' for None."""
    if dt is None:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(tz or timezone.utc).strftime(fmt)


def size(num_bytes: int) -> str:
    """Human-readable byte count (1024-based)."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{num_bytes} B"


def count(n: int | None) -> str:
    """Thousands separators; '' for None."""
    return "" if n is None else f"{n:,}"


def rows_shown(total: int, shown: int | None = None) -> str:
    """`1,500 rows`, `1 row`; with `shown` (rows left by a filter): `100 of 1,500 rows`."""
    noun = "row" if total == 1 else "rows"
    if shown is None:
        return f"{count(total)} {noun}"
    return f"{count(shown)} of {count(total)} {noun}"


def duration(seconds: float | None) -> str:
    """`850 ms`, `12.3 s`, `4 m 05 s`."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def span(delta: timedelta) -> str:
    """A length of time as people say it: `45 s`, `12 min`, `3.5 h`, `2.0 days` (negative counts as 0)."""
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def age(dt: datetime | None, now: datetime) -> str:
    """How long before `now` `dt` was: `12 min ago` ('' for None; a time ahead of `now` counts as `0 s ago`)."""
    if dt is None:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return f"{span(now - dt)} ago"
