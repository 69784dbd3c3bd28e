"""Display formatting shared by the pages: spans of time and ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stackql_inventory import formatting

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=-5), "0 s"),
    (timedelta(seconds=42), "42 s"),
    (timedelta(minutes=2), "2 min"),
    (timedelta(minutes=60), "60 min"),
    (timedelta(hours=3, minutes=30), "3.5 h"),
    (timedelta(days=2), "2.0 days"),
])
def test_span(delta: timedelta, text: str) -> None:
    assert formatting.span(delta) == text


def test_age() -> None:
    assert formatting.age(NOW - timedelta(minutes=12), NOW) == "12 min ago"
    assert formatting.age(datetime(2026, 11, 26, 11, 0), NOW) == "60 min ago"  # naive times are UTC
    assert formatting.age(None, NOW) == ""


@pytest.mark.parametrize(("total", "shown", "text"), [
    (1500, None, "1,500 rows"),
    (1, None, "1 row"),
    (0, None, "0 rows"),
    (100_000, 1234, "1,234 of 100,000 rows"),
    (100_000, 0, "0 of 100,000 rows"),
    (1, 1, "1 of 1 row"),
])
def test_rows_shown(total: int, shown: int | None, text: str) -> None:
    assert formatting.rows_shown(total, shown) == text


def test_timestamp_is_utc_in_any_format() -> None:
    berlin = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 26, 18, 41, tzinfo=berlin)
    assert formatting.timestamp(at) == "2026-11-26 17:41 UTC"
    assert formatting.timestamp(at, fmt="%m-%d %H:%M") == "11-26 17:41"  # the run chart's axis (captioned UTC)
    assert formatting.timestamp(datetime(2026, 11, 26, 17, 41)) == "2026-11-26 17:41 UTC"  # naive: UTC
    assert formatting.timestamp(None) == ""
