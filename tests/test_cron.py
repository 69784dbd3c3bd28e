"""Tests for services/cron.py: parsing, Unix→Quartz, previews, fire times across DST, due checks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from stackql_inventory.services import cron
from stackql_inventory.services.errors import ErrorKind, UserFacingError


def _error(call, *args) -> UserFacingError:
    with pytest.raises(UserFacingError) as info:
        call(*args)
    assert info.value.kind is ErrorKind.VALIDATION
    return info.value


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- Unix → Quartz -------------------------------------------------------------------------------

TO_QUARTZ = [
    # the reference's examples (databricks.md §3.6)
    ("*/15 * * * *", "0 */15 * * * ?"),
    ("0 9 * * 1-5", "0 0 9 ? * MON,TUE,WED,THU,FRI"),
    ("0 0 * * 0", "0 0 0 ? * SUN"),
    ("0 0 * * 7", "0 0 0 ? * SUN"),
    ("0 12 1,15 * *", "0 0 12 1,15 * ?"),
    # minute and hour forms copy through
    ("* * * * *", "0 * * * * ?"),
    ("0 * * * *", "0 0 * * * ?"),
    ("5 4 * * *", "0 5 4 * * ?"),
    ("05 04 * * *", "0 5 4 * * ?"),
    ("59 23 * * *", "0 59 23 * * ?"),
    ("0-30/5 9-17 * * *", "0 0-30/5 9-17 * * ?"),
    ("5/15 * * * *", "0 5/15 * * * ?"),
    ("0,30 8,12,18 * * *", "0 0,30 8,12,18 * * ?"),
    ("0 */2 * * *", "0 0 */2 * * ?"),
    ("10-20 1-3,22 * * *", "0 10-20 1-3,22 * * ?"),
    ("*/59 */23 * * *", "0 */59 */23 * * ?"),
    # day-of-month only → DOW is ?
    ("0 0 */2 * *", "0 0 0 */2 * ?"),
    ("0 0 1-7 * *", "0 0 0 1-7 * ?"),
    ("0 0 5/10 * *", "0 0 0 5/10 * ?"),
    ("0 0 31 * *", "0 0 0 31 * ?"),
    ("0 0 29 2 *", "0 0 0 29 2 ?"),
    ("0 0 31 1,2 *", "0 0 0 31 1,2 ?"),
    ("0 0 */30 * *", "0 0 0 */30 * ?"),
    # months: numbers, names (any case), steps
    ("0 0 1 */3 *", "0 0 0 1 */3 ?"),
    ("0 0 1 1-3 *", "0 0 0 1 1-3 ?"),
    ("0 0 1 JAN-MAR *", "0 0 0 1 1-3 ?"),
    ("0 0 1 jan,Jul *", "0 0 0 1 1,7 ?"),
    ("0 0 * DEC *", "0 0 0 * 12 ?"),
    ("0 0 1 FEB-DEC/2 *", "0 0 0 1 2-12/2 ?"),
    ("0 0 1 */11 *", "0 0 0 1 */11 ?"),
    # day-of-week only → DOM is ?, DOW as names with ranges and steps expanded
    ("0 0 * * 3", "0 0 0 ? * WED"),
    ("0 0 * * wed", "0 0 0 ? * WED"),
    ("0 0 * * */2", "0 0 0 ? * SUN,TUE,THU,SAT"),
    ("0 0 * * 1/2", "0 0 0 ? * MON,WED,FRI"),
    ("0 0 * * 2-6/2", "0 0 0 ? * TUE,THU,SAT"),
    ("0 0 * * */6", "0 0 0 ? * SUN,SAT"),
    ("0 0 * * 5-7", "0 0 0 ? * SUN,FRI,SAT"),
    ("0 0 * * 0,7", "0 0 0 ? * SUN"),
    ("0 0 * * 6,0", "0 0 0 ? * SUN,SAT"),
    ("0 0 * * SAT,SUN", "0 0 0 ? * SUN,SAT"),
    ("0 0 * * mon-fri", "0 0 0 ? * MON,TUE,WED,THU,FRI"),
    ("0 0 * * MON-WED,FRI", "0 0 0 ? * MON,TUE,WED,FRI"),
    ("0 0 * * THU-SUN", "0 0 0 ? * SUN,THU,FRI,SAT"),
    ("0 0 * FEB MON", "0 0 0 ? 2 MON"),
    ("30 6 * 1-6 MON-FRI", "0 30 6 ? 1-6 MON,TUE,WED,THU,FRI"),
    ("0 22 * * 1-5", "0 0 22 ? * MON,TUE,WED,THU,FRI"),
    # a day field that covers every day is not a restriction
    ("0 0 * * MON-SUN", "0 0 0 * * ?"),
    ("0 0 * * 0-6", "0 0 0 * * ?"),
    ("0 0 * * 1-7", "0 0 0 * * ?"),
    ("0 0 * * 0-7", "0 0 0 * * ?"),
    ("0 0 */1 * *", "0 0 0 */1 * ?"),
    ("0 0 1-31 * *", "0 0 0 1-31 * ?"),
    # macros are expanded first
    ("@hourly", "0 0 * * * ?"),
    ("@daily", "0 0 0 * * ?"),
    ("@midnight", "0 0 0 * * ?"),
    ("@weekly", "0 0 0 ? * SUN"),
    ("@monthly", "0 0 0 1 * ?"),
    ("@yearly", "0 0 0 1 1 ?"),
    ("@annually", "0 0 0 1 1 ?"),
    ("@DAILY", "0 0 0 * * ?"),
    (" @hourly ", "0 0 * * * ?"),
    # whitespace
    ("  0   9 * *   1-5  ", "0 0 9 ? * MON,TUE,WED,THU,FRI"),
    ("0\t9\t*\t*\t1-5", "0 0 9 ? * MON,TUE,WED,THU,FRI"),
]


@pytest.mark.parametrize(("unix", "quartz"), TO_QUARTZ)
def test_to_quartz(unix, quartz):
    assert cron.to_quartz(unix) == quartz
    assert cron.quartz_is_valid(quartz)


BOTH_DAY_FIELDS = [
    ("0 0 1 * 1", False),
    ("0 0 1,15 * MON-FRI", False),
    ("0 0 13 * 5", False),
    ("0 0 */2 * */2", False),
    ("0 0 */2 * 1", False),  # Vixie cron ANDs these (a star-led field), croniter ORs them
    ("0 0 */1 * 1", True),
    ("0 0 1 * */1", True),
    ("0 0 1-30 * SUN", False),
    # a range covering every day is a restriction to POSIX cron (so it ORs), "any day" to croniter
    ("0 0 1 * 0-6", True),
    ("0 0 1 * 0-7", True),
    ("0 0 1 * MON-SUN", True),
    ("0 0 1-31 * 1", True),
]


@pytest.mark.parametrize(("unix", "covers_every_day"), BOTH_DAY_FIELDS)
def test_to_quartz_rejects_both_day_fields(unix, covers_every_day):
    message = _error(cron.to_quartz, unix).message
    assert message.startswith(f"`{unix}` sets both day-of-month and day-of-week.")
    assert "EITHER" in message and "two schedules" in message and "Write `*` in one of them" in message
    assert ("not the same as `*`" in message) is covers_every_day
    assert _error(cron.validate, unix, "UTC").message == message
    cron.parse(unix)  # still valid Unix cron


def test_both_day_fields_fire_on_either_day():
    # 2026-01-01 is a Thursday: the 1st OR any Monday, as Unix cron does it.
    runs = cron.next_runs("0 0 1 * 1", "UTC", after=_utc("2025-12-31T12:00"), count=6)
    assert [r.date().isoformat() for r in runs] == [
        "2026-01-01", "2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-01",
    ]


REJECTED = [
    ("", "empty"),
    ("   ", "empty"),
    ("@reboot", "`@reboot` is not supported"),
    ("@fortnightly", "Unknown macro `@fortnightly`"),
    ("@every 5m", "Unknown macro"),
    ("* * * *", ("Cron needs 5 fields (minute hour day-of-month month day-of-week); got 4. "
                 "Example: `*/15 * * * *`.")),
    ("*", "got 1"),
    ("* * * * * *", "got 6"),
    ("0 0 12 * * ?", "Quartz expression with a seconds field"),
    ("0 0 12 ? * MON 2027", "drop the seconds and year"),
    ("0 12 * * ?", "`?` is Quartz syntax"),
    ("0 0 L * *", "`L` (last)"),
    ("0 0 l * *", "`L` (last)"),
    ("0 0 LW * *", "`W` (nearest weekday)"),
    ("0 0 15W * *", "`W` (nearest weekday)"),
    ("0 0 L-3 * *", "`L` (last)"),
    ("0 0 * * 5L", "`L` (last)"),
    ("0 0 * * FRIL", "`L` (last)"),
    ("0 0 * * 1#2", "`#` (nth weekday of the month)"),
    ("0 0 * * MON#1", "`#`"),
    ("60 * * * *", "Minute value 60 is out of range; use 0-59."),
    ("0 24 * * *", "Hour value 24 is out of range; use 0-23."),
    ("0 0 0 * *", "Day-of-month value 0 is out of range; use 1-31."),
    ("0 0 32 * *", "Day-of-month value 32"),
    ("0 0 * 0 *", "Month value 0 is out of range; use 1-12."),
    ("0 0 * 13 *", "Month value 13"),
    ("0 0 * * 8", "Day-of-week value 8 is out of range; use 0-7 (0 and 7 both mean Sunday)."),
    ("0-60 * * * *", "Minute value 60"),
    ("a b c d e", "`a` is not valid in the minute field"),
    ("0 0 * * MONDAY", "`MONDAY` is not valid in the day-of-week field"),
    ("0 0 * * FOO", "names SUN-SAT"),
    ("0 0 * FOO *", "names JAN-DEC"),
    ("H * * * *", "`H` is not valid"),
    ("5-10-15 * * * *", "`5-10-15` is not valid"),
    ("-5 * * * *", "`-5` is not valid"),
    ("1.5 * * * *", "`1.5` is not valid"),
    ("１ * * * *", "is not valid in the minute field"),  # full-width digit
    ("0 0 * MON *", "`MON` is a day-of-week name but sits in the month field"),
    ("0 0 * * JAN", "`JAN` is a month name but sits in the day-of-week field"),
    ("0 JAN * * *", "sits in the hour field"),
    ("*/0 * * * *", "Step `/0` in the minute field must be between 1 and 59."),
    ("*/60 * * * *", "between 1 and 59"),
    ("0 */24 * * *", "Step `/24` in the hour field must be between 1 and 23."),
    ("0 0 */31 * *", "between 1 and 30"),
    ("0 0 * */12 *", "between 1 and 11"),
    ("0 0 * * */7", "between 1 and 6"),
    ("0 0 * * 7/2", "start a day-of-week step at 0-6 (Sunday is 0), e.g. `0/2`."),
    ("*/x * * * *", "must be a whole number"),
    ("*/ * * * *", "must be a whole number"),
    ("1,,2 * * * *", "empty list item"),
    ("1, * * * *", "empty list item"),
    ("0 22-2 * * *", "runs backwards; cron ranges do not wrap around. Write it as two ranges: `22-23,0-2`."),
    ("50-10 * * * *", "`50-59,0-10`"),
    ("0 0 * * FRI-MON", "`FRI-SAT,SUN-MON`"),
    ("0 0 * * fri-mon", "`FRI-SAT,SUN-MON`"),
    ("0 0 * * SAT-MON", "`SAT,SUN-MON`"),
    ("0 0 * * 5-1", "`5-6,0-1`"),
    ("0 0 * NOV-FEB *", "`NOV-DEC,JAN-FEB`"),
    ("0 0 20-10 * *", "`20-31,1-10`"),
    ("0 0 31 2 *", "Day 31 never occurs in February, so this schedule would never run."),
    ("0 0 30 2 *", "never occurs in February"),
    ("0 0 31 4,6,9,11 *", "never occurs in April, June, September, November"),
    ("0 0 30,31 2 *", "Day 30,31 never occurs in February"),
]


@pytest.mark.parametrize(("expr", "fragment"), REJECTED)
def test_parse_rejects_with_a_fix(expr, fragment):
    message = _error(cron.parse, expr).message
    assert fragment in message
    for call in (cron.to_quartz, cron.describe):
        assert _error(call, expr).message == message
    assert _error(cron.validate, expr, "UTC").message == message


def test_parse_rejects_non_text():
    assert "empty" in _error(cron.parse, None).message


@pytest.mark.parametrize(
    ("expr", "fields"),
    [
        ("*/15 * * * *", ("*/15", "*", "*", "*", "*")),
        ("0 9 * jan-mar MON-FRI", ("0", "9", "*", "1-3", "1-5")),
        ("0 0 * * MON-SUN", ("0", "0", "*", "*", "1-7")),
        ("@weekly", ("0", "0", "*", "*", "0")),
        ("05 4 1/10 * *", ("5", "4", "1/10", "*", "*")),
    ],
)
def test_parse_canonical_fields(expr, fields):
    spec = cron.parse(expr)
    assert spec.fields == fields
    assert spec.unix == " ".join(fields)


@pytest.mark.parametrize(
    ("expr", "attr", "values"),
    [
        ("*/20 * * * *", "minutes", {0, 20, 40}),
        ("5/20 * * * *", "minutes", {5, 25, 45}),
        ("0-30/15,59 * * * *", "minutes", {0, 15, 30, 59}),
        ("0 */6 * * *", "hours", {0, 6, 12, 18}),
        ("0 0 */10 * *", "days", {1, 11, 21, 31}),
        ("0 0 1 */4 *", "months", {1, 5, 9}),
        ("0 0 * * 7", "weekdays", {0}),
        ("0 0 * * 5-7", "weekdays", {5, 6, 0}),
        ("0 0 * * MON-SUN", "weekdays", set(range(7))),
        ("0 0 * * */3", "weekdays", {0, 3, 6}),
        ("0 0 * * 5/1", "weekdays", {5, 6}),
    ],
)
def test_parse_values(expr, attr, values):
    assert getattr(cron.parse(expr), attr) == frozenset(values)


# --- Quartz structure ----------------------------------------------------------------------------

QUARTZ_VALIDITY = [
    # verified against Quartz 2.3.2 (databricks.md §3.6)
    ("0 0 12 * * ?", True),
    ("0 0 12 ? * 1", True),
    ("0 0 12 * * *", False),
    ("0 0 12 1 * MON", False),
    ("0 0 12 ? * 0", False),
    # more Quartz forms
    ("0 */15 * * * ?", True),
    ("0 0/5 * * * ?", True),
    ("0 0 9 ? * MON,TUE,WED,THU,FRI", True),
    ("0 0 9 ? * MON-FRI", True),
    ("0 0 9 ? * 2-6", True),
    ("0 0 9 ? * 7", True),
    ("0 0 12 ? JAN-MAR SUN", True),
    ("0 0 12 1,15 * ? 2027", True),
    ("0 0 12 1,15 * ? 2027-2030", True),
    ("0 0 0 L * ?", True),
    ("0 0 0 LW * ?", True),
    ("0 0 0 L-3 * ?", True),
    ("0 0 0 15W * ?", True),
    ("0 0 0 ? * 6L", True),
    ("0 0 0 ? * L", True),
    ("0 0 0 ? * 2#1", True),
    ("0 0 0 ? * FRI#3", True),
    ("0 0 0 * * ?", True),
    ("0 0 0 ? * *", True),
    ("59 59 23 31 12 ?", True),
    ("0 0 12 ? * ?", False),
    ("0 0 12 ? * 8", False),
    ("0 0 12 ? * MON#6", False),
    ("0 0 12 ? * FOO", False),
    ("0 0 12 ? 13 *", False),
    ("0 0 12 ? FOO *", False),
    ("0 0 0 32 * ?", False),
    ("0 0 0 0 * ?", False),
    ("0 0 0 0W * ?", False),
    ("0 0 0 L-31 * ?", False),
    ("0 0 24 * * ?", False),
    ("0 60 * * * ?", False),
    ("60 0 12 * * ?", False),
    ("0 */60 * * * ?", False),
    ("0 */0 * * * ?", False),
    ("? 0 12 * * ?", False),
    ("0 0 12 * ? ?", False),
    ("0 0 12 1 * ? 1969", False),
    ("*/15 * * * *", False),
    ("0 0 12 * * ? 2027 1", False),
    ("", False),
    ("0 0 12 1-x * ?", False),
]


@pytest.mark.parametrize(("quartz", "valid"), QUARTZ_VALIDITY)
def test_quartz_is_valid(quartz, valid):
    assert cron.quartz_is_valid(quartz) is valid


def test_quartz_is_valid_rejects_non_text():
    assert cron.quartz_is_valid(None) is False


# --- brute-force cross-check: Quartz fire times == Unix fire times --------------------------------
# A small Quartz evaluator written independently of cron.py, with Quartz's own numbering (SUN=1),
# compared minute by minute with croniter's reading of the original Unix expression.

_Q_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_Q_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _quartz_set(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    def number(token: str) -> int:
        return names.index(token) + 1 if token in names else int(token)

    if text in ("*", "?"):
        return set(range(low, high + 1))
    values: set[int] = set()
    for item in text.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (number(t) for t in body.split("-"))
        else:
            start = number(body)
            end = high if step else start
        values |= set(range(start, end + 1, int(step or 1)))
    return values


def _quartz_fire_times(quartz: str, start: datetime, end: datetime) -> list[datetime]:
    second, minute, hour, dom, month, dow = quartz.split()
    assert second == "0" and (dom == "?") != (dow == "?")
    minutes, hours = _quartz_set(minute, 0, 59), _quartz_set(hour, 0, 23)
    days, months = _quartz_set(dom, 1, 31), _quartz_set(month, 1, 12, _Q_MONTHS)
    weekdays = _quartz_set(dow, 1, 7, _Q_DAYS)
    fires = []
    day = start.replace(hour=0, minute=0)
    while day < end:
        quartz_weekday = (day.weekday() + 1) % 7 + 1  # Python Monday=0 → Quartz MON=2, SUN=1
        if day.month in months and day.day in days and quartz_weekday in weekdays:
            fires += [day.replace(hour=h, minute=m) for h in sorted(hours) for m in sorted(minutes)]
        day += timedelta(days=1)
    return [f for f in fires if start <= f < end]


def _unix_fire_times(unix: str, start: datetime, end: datetime) -> list[datetime]:
    it = croniter(unix.strip(), start - timedelta(minutes=1))
    fires = []
    while (t := it.get_next(datetime)) < end:
        fires.append(t)
    return fires


# Three-week windows: across a month end, across a leap-year February, across a year end.
WINDOWS = [datetime(2026, 1, 20), datetime(2028, 2, 15), datetime(2026, 12, 20)]
CROSS_CHECK = [unix for unix, _ in TO_QUARTZ] + ["0 6 * JUL-DEC SAT", "0 12 * * */5", "0 0 * * 6/1"]


@pytest.mark.parametrize("unix", CROSS_CHECK)
def test_quartz_fires_exactly_when_unix_does(unix):
    quartz = cron.to_quartz(unix)
    total = 0
    for start in WINDOWS:
        end = start + timedelta(weeks=3)
        expected = _unix_fire_times(unix, start, end)
        assert _quartz_fire_times(quartz, start, end) == expected, (unix, quartz, start)
        total += len(expected)
    assert total > 0, f"{unix} never fired in the windows; pick another case"


def _random_field(rng: random.Random, low: int, high: int, names: tuple[str, ...] = ()) -> str:
    def value() -> str:
        return rng.choice(names) if names and rng.random() < 0.3 else str(rng.randint(low, high))

    step_top = 6 if (low, high) == (0, 7) else high  # day-of-week steps run over 0-6
    items = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        a, b = sorted(rng.sample(range(low, high + 1), 2))
        items.append(rng.choice((
            "*", f"*/{rng.randint(1, step_top - low)}", value(), f"{a}-{b}", f"{a}-{b}/{rng.randint(1, 5)}",
            f"{rng.randint(low, step_top)}/{rng.randint(1, 5)}",
        )))
    return ",".join(items)


def _random_cron(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join((
        str(rng.randint(0, 59)) if rng.random() < 0.5 else _random_field(rng, 0, 59),
        _random_field(rng, 0, 23),
        _random_field(rng, 1, 31) if rng.random() < 0.4 else "*",
        _random_field(rng, 1, 12, ("JAN", "MAR", "DEC")) if rng.random() < 0.4 else "*",
        _random_field(rng, 0, 7, ("MON", "FRI", "SUN")) if rng.random() < 0.5 else "*",
    ))


@pytest.mark.parametrize("seed", range(150))
def test_random_crons_convert_and_describe(seed):
    unix = _random_cron(seed)
    try:
        quartz = cron.to_quartz(unix)
    except UserFacingError as error:  # only for rules with their own table above
        assert error.kind is ErrorKind.VALIDATION
        assert any(words in error.message for words in ("never occurs", "sets both day-of-month"))
        return
    assert cron.quartz_is_valid(quartz), (unix, quartz)
    start = WINDOWS[seed % len(WINDOWS)]
    end = start + timedelta(weeks=3)
    assert _quartz_fire_times(quartz, start, end) == _unix_fire_times(unix, start, end), (unix, quartz)
    assert not cron.describe(unix).startswith("Cron schedule"), unix


# --- descriptions --------------------------------------------------------------------------------

DESCRIPTIONS = [
    ("*/5 * * * *", "Every 5 minutes"),
    ("*/15 * * * *", "Every 15 minutes"),
    ("* * * * *", "Every minute"),
    ("0 * * * *", "Every hour"),
    ("0 */2 * * *", "Every 2 hours"),
    ("30 2 * * *", "At 02:30"),
    ("0 17 * * *", "At 17:00"),
    ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
    ("0 9 * * mon-fri", "At 09:00, Monday through Friday"),
    ("0 0 * * 7", "At 00:00, only on Sunday"),
    ("0 0 * * 0,7", "At 00:00, only on Sunday"),
    ("0 0 * * 5-7", "At 00:00, Friday through Sunday"),
    ("0 0 * * SAT,SUN", "At 00:00, only on Saturday and Sunday"),
    ("0 0 * * */2", "At 00:00, only on Sunday, Tuesday, Thursday, and Saturday"),
    ("0 0 * * MON-SUN", "At 00:00"),
    ("0 12 1,15 * *", "At 12:00, on day 1 and 15 of the month"),
    ("0 0 1 JAN-MAR *", "At 00:00, on day 1 of the month, January through March"),
    ("0 0 1 1 *", "At 00:00, on day 1 of the month, only in January"),
    ("@hourly", "Every hour"),
    ("@daily", "At 00:00"),
    ("@midnight", "At 00:00"),
    ("@weekly", "At 00:00, only on Sunday"),
    ("@monthly", "At 00:00, on day 1 of the month"),
    ("@yearly", "At 00:00, on day 1 of the month, only in January"),
    ("0 0 1 * 1", "At 00:00, on day 1 of the month, or on Monday"),
    # forms cron_descriptor cannot read directly: `*` or steps inside a list
    ("*,37-39 5 * * *", "Every minute, between 05:00 and 05:59"),
    ("47 */17,1/11 */23 * *", "At 00:47, 01:47, 12:47, 17:47 and 23:47, on day 1 and 24 of the month"),
]


@pytest.mark.parametrize(("expr", "text"), DESCRIPTIONS)
def test_describe(expr, text):
    assert cron.describe(expr) == text


@pytest.mark.parametrize("expr", CROSS_CHECK + [unix for unix, _ in BOTH_DAY_FIELDS])
def test_describe_every_valid_expression(expr):
    text = cron.describe(expr)
    assert text and not text.startswith("Cron schedule"), text  # no fallback for any valid input


# --- time zones ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Etc/GMT+5", "Australia/Lord_Howe"]
)
def test_to_zone_accepts_iana_names(name):
    assert cron.to_zone(name) == ZoneInfo(name)
    cron.validate("0 9 * * 1-5", name)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "Time zone is empty. Pick an IANA name such as `UTC` or `Europe/Berlin`."),
        ("  ", "Time zone is empty"),
        ("europe/berlin", ("Unknown time zone `europe/berlin`. Use an IANA name such as `UTC` or "
                           "`Europe/Berlin`. Did you mean `Europe/Berlin`?")),
        ("Europe/Berln", "Did you mean `Europe/Berlin`?"),
        ("Europe/Berlin ", "Did you mean `Europe/Berlin`?"),
        ("America/New York", "Did you mean `America/New_York`?"),
        ("Mars/Olympus_Mons", "Unknown time zone `Mars/Olympus_Mons`."),
        ("localtime", "Unknown time zone `localtime`"),
        ("Factory", "Unknown time zone `Factory`"),
        ("../../etc/passwd", "Unknown time zone"),
        ("/etc/localtime", "Unknown time zone"),
        ("right/Europe/Berlin", "Unknown time zone"),
        ("posix/Europe/Berlin", "Unknown time zone"),
    ],
)
def test_to_zone_rejects_with_hint(name, fragment):
    assert fragment in _error(cron.to_zone, name).message
    assert fragment in _error(cron.validate, "0 9 * * *", name).message


def test_unknown_zone_without_close_match_has_no_guess():
    assert "Did you mean" not in _error(cron.to_zone, "Mars/Olympus_Mons").message


# --- next runs -----------------------------------------------------------------------------------

NEXT_RUNS = [
    ("*/15 * * * *", "UTC", "2026-01-05T10:07:30+00:00",
     ["01-05 10:15+00:00", "01-05 10:30+00:00", "01-05 10:45+00:00", "01-05 11:00+00:00"]),
    ("0 9 * * 1-5", "UTC", "2026-01-09T09:00:00+00:00",  # a Friday, exactly at a slot: strictly after
     ["01-12 09:00+00:00", "01-13 09:00+00:00", "01-14 09:00+00:00"]),
    ("0 9 * * 1-5", "Europe/Berlin", "2026-01-09T12:00:00+00:00",
     ["01-12 09:00+01:00", "01-13 09:00+01:00"]),
    ("@monthly", "America/New_York", "2026-01-15T00:00:00+00:00",
     ["02-01 00:00-05:00", "03-01 00:00-05:00", "04-01 00:00-04:00"]),
    # Europe/Berlin spring forward, 2026-03-29 02:00 → 03:00: 02:30 does not exist that day and
    # the daily job runs at the first minute after the gap, then at 02:30 again.
    ("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00+01:00",
     ["03-28 02:30+01:00", "03-29 03:00+02:00", "03-30 02:30+02:00"]),
    ("0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00+01:00",
     ["03-29 01:00+01:00", "03-29 03:00+02:00", "03-29 04:00+02:00"]),
    ("30 * * * *", "Europe/Berlin", "2026-03-29T00:45:00+01:00",  # every hour at :30, in real time
     ["03-29 01:30+01:00", "03-29 03:30+02:00", "03-29 04:30+02:00"]),
    ("0 2,3 * * *", "Europe/Berlin", "2026-03-28T12:00:00+01:00",  # 02:00 moves onto 03:00: once
     ["03-29 03:00+02:00", "03-30 02:00+02:00", "03-30 03:00+02:00"]),
    # Europe/Berlin fall back, 2026-10-25 03:00 → 02:00: a daily 02:30 runs once, not twice …
    ("30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00+02:00",
     ["10-24 02:30+02:00", "10-25 02:30+02:00", "10-26 02:30+01:00"]),
    ("15 1-3 * * *", "Europe/Berlin", "2026-10-25T00:00:00+02:00",
     ["10-25 01:15+02:00", "10-25 02:15+02:00", "10-25 03:15+01:00"]),
    # … while an hourly job runs in both copies of the repeated hour: they are two real hours.
    ("0 * * * *", "Europe/Berlin", "2026-10-25T00:30:00+02:00",
     ["10-25 01:00+02:00", "10-25 02:00+02:00", "10-25 02:00+01:00", "10-25 03:00+01:00"]),
    ("*/30 * * * *", "Europe/Berlin", "2026-10-25T02:45:00+02:00",  # starting inside the first copy
     ["10-25 02:00+01:00", "10-25 02:30+01:00", "10-25 03:00+01:00"]),
    # America/New_York: spring forward 2026-03-08 02:00 → 03:00, fall back 2026-11-01 02:00 → 01:00.
    ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
     ["03-08 03:00-04:00", "03-09 02:30-04:00"]),
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
     ["11-01 01:30-04:00", "11-02 01:30-05:00"]),
    ("0 * * * *", "America/New_York", "2026-11-01T00:30:00-04:00",
     ["11-01 01:00-04:00", "11-01 01:00-05:00", "11-01 02:00-05:00"]),
    ("0 9 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",  # 9:00 local stays 9:00 local
     ["03-08 09:00-04:00", "03-09 09:00-04:00"]),
    ("0 9 * * *", "UTC", "2026-03-28T12:00:00+00:00", ["03-29 09:00+00:00", "03-30 09:00+00:00"]),
]


def _short(value: datetime) -> str:
    text = value.isoformat(timespec="minutes")  # 2026-03-29T03:00+02:00 → 03-29 03:00+02:00
    return f"{text[5:10]} {text[11:]}"


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), NEXT_RUNS)
def test_next_runs(expr, tz, after, expected):
    start = datetime.fromisoformat(after)
    runs = cron.next_runs(expr, tz, after=start, count=len(expected))
    assert [_short(r) for r in runs] == expected
    assert all(r.tzinfo == ZoneInfo(tz) for r in runs)
    first = cron.next_run_after(expr, tz, start)
    assert first.tzinfo is UTC and first == runs[0].astimezone(UTC)


@pytest.mark.parametrize("count", [0, -1, 1001])
def test_next_runs_count_is_bounded(count):
    with pytest.raises(ValueError):
        cron.next_runs("* * * * *", "UTC", after=_utc("2026-01-01T00:00"), count=count)


# Brute force over every minute of two days around each transition: a slot is every instant
# whose local wall time matches (hour field `*`: repeated hour twice, gap skipped); otherwise
# each matching wall time fires once, first occurrence, and a wall time lost in a spring-forward
# gap fires at the first instant after the gap.

DST_ZONES = [
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"),
    ("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
    ("Australia/Sydney", "2026-04-05"), ("Australia/Sydney", "2026-10-04"),
    ("Australia/Lord_Howe", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),  # 30-minute shift
    ("Europe/Dublin", "2026-03-29"), ("Europe/Dublin", "2026-10-25"),  # "negative DST" in tzdata
]
DST_CRONS = [
    ("0 * * * *", True), ("*/30 * * * *", True), ("45 * * * *", True), ("*/20 * * * 0", True),
    ("30 2 * * *", False), ("0 2,3 * * *", False), ("15 1-3 * * *", False), ("*/20 1-3 * * *", False),
    ("0 */2 * * *", False), ("30 1 * * *", False), ("59 1 * * *", False), ("0 0 * * *", False),
    ("* 2 * * *", False), ("0,30 2 * * 0", False),
]


def _policy_fire_times(
    expr: str, zone: ZoneInfo, start: datetime, end: datetime, elapsed: bool
) -> list[datetime]:
    day = timedelta(days=1)
    walls = set(_unix_fire_times(expr, start.replace(tzinfo=None) - day, end.replace(tzinfo=None) + day))
    fires, seen, previous_wall = [], set(), None
    t = start + timedelta(minutes=1)
    while t < end:
        wall = t.astimezone(zone).replace(tzinfo=None, fold=0)
        gap = previous_wall is not None and wall - previous_wall > timedelta(minutes=1)
        lost = gap and any(previous_wall + timedelta(minutes=k) in walls
                           for k in range(1, (wall - previous_wall) // timedelta(minutes=1)))
        if wall in walls and (elapsed or wall not in seen):
            fires.append(t)
        elif lost and not elapsed:
            fires.append(t)
        seen.add(wall)
        previous_wall = wall
        t += timedelta(minutes=1)
    return fires


@pytest.mark.parametrize(("tz", "day"), DST_ZONES)
@pytest.mark.parametrize(("expr", "elapsed"), DST_CRONS)
def test_fire_times_across_dst_match_brute_force(tz, day, expr, elapsed):
    zone = ZoneInfo(tz)
    start = datetime.fromisoformat(day).replace(tzinfo=zone) - timedelta(days=1)
    end = start + timedelta(days=2)
    assert start.utcoffset() != end.utcoffset(), "the window must contain a DST change"
    expected = _policy_fire_times(expr, zone, start.astimezone(UTC), end.astimezone(UTC), elapsed)
    assert expected
    forward = [t.astimezone(UTC) for t in cron.next_runs(expr, tz, after=start, count=len(expected) + 1)]
    assert forward[:-1] == expected and forward[-1] >= end
    backward, t = [], end
    while (t := cron.previous_run_before(expr, tz, t)) > start:
        backward.append(t)
    assert backward[::-1] == expected


@pytest.mark.parametrize(
    ("expr", "tz", "before", "expected"),
    [
        ("0 * * * *", "UTC", "2026-01-05T10:00:00+00:00", "2026-01-05T09:00:00+00:00"),  # strictly before
        ("0 * * * *", "UTC", "2026-01-05T10:00:01+00:00", "2026-01-05T10:00:00+00:00"),
        ("0 9 * * 1-5", "UTC", "2026-01-11T12:00:00+00:00", "2026-01-09T09:00:00+00:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-29T12:00:00+02:00", "2026-03-29T01:00:00+00:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-25T12:00:00+01:00", "2026-10-25T00:30:00+00:00"),
    ],
)
def test_previous_run_before(expr, tz, before, expected):
    result = cron.previous_run_before(expr, tz, datetime.fromisoformat(before))
    assert result == datetime.fromisoformat(expected) and result.tzinfo is UTC


# --- catch-up and due checks ---------------------------------------------------------------------

MISSED = [
    ("0 * * * *", "UTC", "2026-01-05T10:00", "2026-01-05T10:30", None),
    ("0 * * * *", "UTC", "2026-01-05T10:00", "2026-01-05T11:00", "2026-01-05T11:00"),  # now is a slot
    ("0 * * * *", "UTC", "2026-01-05T10:00", "2026-01-05T14:59", "2026-01-05T14:00"),  # 4 missed: once
    ("0 * * * *", "UTC", "2026-01-05T10:00:30", "2026-01-05T10:59:59", None),  # ran late, still fine
    ("0 * * * *", "UTC", "2026-01-05T10:00", "2026-01-05T10:00", None),
    ("0 * * * *", "UTC", "2026-01-05T12:00", "2026-01-05T10:00", None),  # last run "in the future"
    ("0 0 * * *", "UTC", "2026-01-04T00:00:05", "2026-01-05T00:00", "2026-01-05T00:00"),
    ("0 9 * * 1-5", "UTC", "2026-01-09T09:00", "2026-01-11T23:00", None),  # a weekend passed
    ("0 9 * * 1-5", "UTC", "2026-01-02T09:00", "2026-01-11T23:00", "2026-01-09T09:00"),  # down a week
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T01:30", "2026-03-29T01:00", "2026-03-29T01:00"),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30", "2026-10-25T01:45", None),  # no second 02:30
]


@pytest.mark.parametrize(("expr", "tz", "last", "now", "expected"), MISSED)
def test_missed_slot(expr, tz, last, now, expected):
    result = cron.missed_slot(expr, tz, _utc(last), _utc(now))
    assert result == (expected and _utc(expected))
    assert result is None or result.tzinfo is UTC


@pytest.mark.parametrize(
    ("failures", "minutes"),
    [(0, 0), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60), (100, 60), (10**6, 60)],
)
def test_backoff(failures, minutes):
    assert cron.backoff(failures) == timedelta(minutes=minutes)


def test_backoff_rejects_negative_failures():
    with pytest.raises(ValueError):
        cron.backoff(-1)


IS_DUE = [
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T10:59", 0, False),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T11:00", 0, True),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-08T10:00", 0, True),  # down for days: due (once)
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T11:01", 1, False),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T11:02", 1, True),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T11:07", 3, False),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T11:08", 3, True),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T11:59", 6, False),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T12:00", 6, True),
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T12:00", 50, True),  # capped at 60 minutes
    ("0 * * * *", "2026-01-05T10:00", "2026-01-05T09:00", 0, False),  # clock went backwards
    ("*/15 * * * *", "2026-01-05T10:14:59", "2026-01-05T10:15", 0, True),
    ("0 9 * * *", "2026-01-05T09:00", "2026-01-06T09:03", 2, False),
    ("0 9 * * *", "2026-01-05T09:00", "2026-01-06T09:04", 2, True),
    ("0 9 * * 1-5", "2026-01-09T09:00", "2026-01-11T09:00", 0, False),  # Friday → Sunday: not due
    ("0 9 * * 1-5", "2026-01-09T09:00", "2026-01-12T09:00", 0, True),
]


@pytest.mark.parametrize(("expr", "last", "now", "failures", "due"), IS_DUE)
def test_is_due(expr, last, now, failures, due):
    assert cron.is_due(_utc(last), _utc(now), expr, "UTC", failures) is due


def test_is_due_in_the_schedule_zone():
    # 09:00 in New York is 14:00 UTC in winter.
    last = _utc("2026-01-05T14:00")
    assert not cron.is_due(last, _utc("2026-01-06T13:59"), "0 9 * * *", "America/New_York", 0)
    assert cron.is_due(last, _utc("2026-01-06T14:00"), "0 9 * * *", "America/New_York", 0)


# --- nominal interval ----------------------------------------------------------------------------

NOMINAL = [
    ("*/15 * * * *", "UTC", "2026-01-05T10:07", timedelta(minutes=15)),
    ("@hourly", "UTC", "2026-01-05T10:07", timedelta(hours=1)),
    ("@daily", "UTC", "2026-01-05T10:07", timedelta(days=1)),
    ("@weekly", "UTC", "2026-01-05T10:07", timedelta(weeks=1)),
    ("0 9 * * 1-5", "UTC", "2026-01-10T12:00", timedelta(days=3)),  # Saturday: Friday → Monday
    ("0 9 * * 1-5", "UTC", "2026-01-12T08:59", timedelta(days=3)),  # Monday before the run
    ("0 9 * * 1-5", "UTC", "2026-01-12T09:00", timedelta(days=1)),  # a slot starts its own gap
    ("0 9 * * 1-5", "UTC", "2026-01-13T10:00", timedelta(days=1)),
    ("0 9,17 * * *", "UTC", "2026-01-05T10:00", timedelta(hours=8)),
    ("0 9,17 * * *", "UTC", "2026-01-05T18:00", timedelta(hours=16)),
    ("@monthly", "UTC", "2026-02-10T00:00", timedelta(days=28)),
    ("@monthly", "UTC", "2026-01-10T00:00", timedelta(days=31)),
    ("0 0 29 2 *", "UTC", "2026-06-01T00:00", timedelta(days=366 + 365 * 3)),  # leap days only
    # real elapsed time: the day of a DST change is 23 or 25 hours long
    ("0 0 * * *", "Europe/Berlin", "2026-03-28T12:00", timedelta(hours=24)),
    ("0 0 * * *", "Europe/Berlin", "2026-03-29T12:00", timedelta(hours=23)),
    ("0 0 * * *", "Europe/Berlin", "2026-10-25T12:00", timedelta(hours=25)),
    ("0 * * * *", "Europe/Berlin", "2026-10-25T00:30", timedelta(hours=1)),  # inside the repeated hour
]


@pytest.mark.parametrize(("expr", "tz", "around", "interval"), NOMINAL)
def test_nominal_interval(expr, tz, around, interval):
    assert cron.nominal_interval(expr, tz, _utc(around)) == interval


# --- misuse and presets --------------------------------------------------------------------------

_NAIVE = datetime(2026, 1, 5, 10, 0)
_AWARE = _utc("2026-01-05T10:00")


@pytest.mark.parametrize(
    "call",
    [
        lambda: cron.next_runs("* * * * *", "UTC", after=_NAIVE),
        lambda: cron.next_run_after("* * * * *", "UTC", _NAIVE),
        lambda: cron.previous_run_before("* * * * *", "UTC", _NAIVE),
        lambda: cron.missed_slot("* * * * *", "UTC", _NAIVE, _AWARE),
        lambda: cron.missed_slot("* * * * *", "UTC", _AWARE, _NAIVE),
        lambda: cron.is_due(_NAIVE, _AWARE, "* * * * *", "UTC", 0),
        lambda: cron.is_due(_AWARE, _NAIVE, "* * * * *", "UTC", 0),
        lambda: cron.nominal_interval("* * * * *", "UTC", _NAIVE),
    ],
)
def test_naive_datetimes_are_refused(call):
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


def test_never_run_schedule_needs_a_reference_time():
    with pytest.raises(TypeError):
        cron.is_due(None, _AWARE, "* * * * *", "UTC", 0)


@pytest.mark.parametrize(("label", "expr"), cron.PRESETS)
def test_presets_are_valid_everywhere(label, expr):
    cron.validate(expr, "UTC")
    assert cron.quartz_is_valid(cron.to_quartz(expr))
    assert label and cron.describe(expr)


def test_presets_cover_the_usual_choices():
    exprs = [expr for _, expr in cron.PRESETS]
    assert {"0 * * * *", "0 0 * * *", "0 0 * * 0"} <= set(exprs)
    assert len(set(exprs)) == len(exprs) and len({label for label, _ in cron.PRESETS}) == len(exprs)
