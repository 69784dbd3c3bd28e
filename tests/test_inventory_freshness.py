"""Freshness badges: Pipes' thresholds at each boundary, failing/manual/pending/paused, irregular schedules."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from stackql_inventory.services import cron
from stackql_inventory.services.inventory_freshness import Freshness, classify, schedule_interval

SUCCESS = datetime(2026, 11, 25, 9, 0, 3, tzinfo=UTC)   # an hourly run that finished 3 s after its slot
HOUR = timedelta(hours=1)
TICK = timedelta(seconds=1)


@pytest.mark.parametrize(("age", "expected"), [
    (timedelta(0), Freshness.FRESH),
    (1 * HOUR, Freshness.FRESH),
    (1.5 * HOUR - TICK, Freshness.FRESH),
    (1.5 * HOUR, Freshness.FRESH),           # "within 1.5x" includes 1.5x
    (1.5 * HOUR + TICK, Freshness.STALE),
    (2 * HOUR - TICK, Freshness.STALE),
    (2 * HOUR, Freshness.STALE),             # 1.5x-2x includes 2x
    (2 * HOUR + TICK, Freshness.EXPIRED),
    (30 * HOUR, Freshness.EXPIRED),
])
def test_thresholds_at_each_boundary(age: timedelta, expected: Freshness) -> None:
    verdict = classify(now=SUCCESS + age, cron_expression="0 * * * *", timezone="UTC",
                       last_success_at=SUCCESS, last_status="success")
    assert verdict.state is expected
    assert verdict.ratio == pytest.approx(age / HOUR)


@pytest.mark.parametrize(("cron_expr", "interval"), [
    ("*/15 * * * *", timedelta(minutes=15)),
    ("0 6 * * *", timedelta(days=1)),
])
def test_thresholds_scale_with_the_interval(cron_expr: str, interval: timedelta) -> None:
    success = datetime(2026, 11, 25, 6, 0, 10, tzinfo=UTC)
    at = lambda k, d=timedelta(0): classify(now=success + k * interval + d, cron_expression=cron_expr,  # noqa: E731
                                             timezone="UTC", last_success_at=success, last_status="success").state
    assert (at(1.5), at(1.5, TICK), at(2), at(2, TICK)) == (Freshness.FRESH, Freshness.STALE, Freshness.STALE,
                                                            Freshness.EXPIRED)


def test_a_weekday_schedule_is_not_stale_over_the_weekend() -> None:
    friday = datetime(2026, 11, 27, 9, 0, 5, tzinfo=UTC)      # Friday 09:00 run; next slot Monday 09:00
    sunday = friday + timedelta(days=2)
    verdict = classify(now=sunday, cron_expression="0 9 * * 1-5", timezone="UTC", last_success_at=friday,
                       last_status="success")
    assert verdict.state is Freshness.FRESH
    thursday = friday - timedelta(days=1)                      # Friday's run was missed: Thursday's data is old
    verdict = classify(now=sunday, cron_expression="0 9 * * 1-5", timezone="UTC", last_success_at=thursday,
                       last_status="success")
    assert verdict.state is Freshness.EXPIRED


def test_failing_wins_and_says_which_data_is_shown() -> None:
    verdict = classify(now=SUCCESS + 10 * TICK, cron_expression="0 * * * *", timezone="UTC",
                       last_success_at=SUCCESS, last_status="failed")
    assert verdict.state is Freshness.FAILING
    assert "2026-11-25 09:00 UTC" in verdict.reason
    never = classify(now=SUCCESS, cron_expression="0 * * * *", timezone="UTC", last_success_at=None,
                     last_status="failed")
    assert never.state is Freshness.FAILING and "no run has succeeded" in never.reason


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"cron_expression": None, "last_success_at": SUCCESS, "last_status": "success"}, Freshness.MANUAL),
    ({"cron_expression": "", "last_success_at": None, "last_status": "failed"}, Freshness.MANUAL),
    ({"cron_expression": "0 * * * *", "last_success_at": None, "last_status": None}, Freshness.PENDING),
    ({"cron_expression": "0 * * * *", "last_success_at": SUCCESS, "last_status": "success", "is_active": False},
     Freshness.PAUSED),
    ({"cron_expression": "61 * * * *", "last_success_at": SUCCESS, "last_status": "success"}, Freshness.UNKNOWN),
])
def test_states_without_a_ratio(kwargs: dict, expected: Freshness) -> None:
    verdict = classify(now=SUCCESS + 100 * HOUR, timezone="UTC", **kwargs)
    assert verdict.state is expected
    assert verdict.ratio is None
    assert verdict.reason


def test_fast_interval_matches_the_exact_walk_in_dst_zones() -> None:
    """The arithmetic fast path gives what cron.nominal_interval gives, DST transitions included."""
    rng = random.Random(20261126)
    exprs = ["*/15 * * * *", "0 * * * *", "0 6 * * *", "30 2 * * *", "0 */2 * * *", "*/7 * * * *",
             "0,50 * * * *", "0 9 * * 1-5", "*/5 9-17 * * *", "0 0 1 * *"]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for expr in exprs:
        for zone in zones:
            for _ in range(60):
                around = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
                assert schedule_interval(expr, zone, around) == cron.nominal_interval(expr, zone, around), \
                    (expr, zone, around)
    # Around a DST change the walk is used: in Berlin the 06:00 run on the day clocks go forward comes 23 h later.
    march = datetime(2026, 3, 28, 5, 0, tzinfo=UTC)
    assert schedule_interval("0 6 * * *", "Europe/Berlin", march) == timedelta(hours=23)
