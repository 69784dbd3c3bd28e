"""Cron schedules: parse Unix cron, convert it to Quartz for Databricks, describe it, compute fire times."""

from __future__ import annotations

import calendar
import difflib
import functools
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from croniter import croniter

from stackql_inventory.services.errors import ErrorKind, UserFacingError

# Shown to the user, so keep it short and on one line.
_FIELDS_HINT = "minute hour day-of-month month day-of-week"
_EXAMPLE = "`*/15 * * * *`"

MACROS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# (label, expr) pairs the schedule form offers as one-click choices.
PRESETS: tuple[tuple[str, str], ...] = (
    ("Every 15 minutes", "*/15 * * * *"),
    ("Every hour", "0 * * * *"),
    ("Every day at 00:00", "0 0 * * *"),
    ("Every Sunday at 00:00", "0 0 * * 0"),
)

# English names, not calendar.month_abbr: that one follows the process locale.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_MONTH_NAMES = {name[:3].upper(): i for i, name in enumerate(_MONTHS, start=1)}
_DOW_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_QUARTZ_DOW = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # indexed by Unix day number

# The most consecutive failures that still lengthen the backoff: 2**6 = 64 > the 60-minute cap.
_BACKOFF_CAP = timedelta(minutes=60)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int          # highest value accepted as input (day-of-week accepts 7 for Sunday)
    step_high: int     # where `*` and `a/n` stop (day-of-week: 6, so `*/2` never adds Sunday twice)
    names: dict[str, int]


_UNIX_FIELDS = (
    _Field("minute", 0, 59, 59, {}),
    _Field("hour", 0, 23, 23, {}),
    _Field("day-of-month", 1, 31, 31, {}),
    _Field("month", 1, 12, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 7, 6, _DOW_NAMES),
)

_ITEM = re.compile(r"(?:(\*)|([A-Za-z0-9]+)(?:-([A-Za-z0-9]+))?)(?:/([A-Za-z0-9]*))?")
_QUARTZ_ONLY_DAY = re.compile(r"L(?:W|-\d+)?|\d+[LW]|[A-Z]{3}L", re.IGNORECASE)


@dataclass(frozen=True)
class CronSpec:
    """A parsed 5-field Unix cron expression.

    `fields` is the canonical text of each field (names turned into numbers, macros expanded);
    the frozensets hold the values each field matches (weekdays 0-6, Sunday = 0).
    """

    expr: str
    fields: tuple[str, str, str, str, str]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    macro: str | None = None

    @property
    def unix(self) -> str:
        """The canonical 5-field expression."""
        return " ".join(self.fields)

    @property
    def dom_restricted(self) -> bool:
        """True when day-of-month does not match every day."""
        return len(self.days) < 31

    @property
    def dow_restricted(self) -> bool:
        """True when day-of-week does not match every day."""
        return len(self.weekdays) < 7



def _croniter_expr(spec: CronSpec) -> str:
    # croniter only ever sees `*` or a plain list of numbers, so its own parsing quirks
    # (names, 7 = Sunday, `a/n`, full ranges) cannot disagree with ours.
    sets = (spec.minutes, spec.hours, spec.days, spec.months, spec.weekdays)
    return " ".join(
        "*" if len(values) == size else ",".join(str(v) for v in sorted(values))
        for values, size in zip(sets, (60, 24, 31, 12, 7))
    )


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _invalid(message: str) -> UserFacingError:
    return UserFacingError(message, ErrorKind.VALIDATION)


# --- parsing -------------------------------------------------------------------------------------


def _value(token: str, field: _Field, item: str, *, range_end: bool = False) -> int:
    name = token.upper()
    if _is_number(token):
        value = int(token)
    elif name in field.names:
        value = field.names[name]
        if range_end and field.name == "day-of-week" and value == 0:
            value = 7  # `MON-SUN` reads naturally as Monday through Sunday
    elif name in _MONTH_NAMES or name in _DOW_NAMES:
        other = "month" if name in _MONTH_NAMES else "day-of-week"
        raise _invalid(
            f"`{token}` is a {other} name but sits in the {field.name} field. "
            f"Check the field order: {_FIELDS_HINT}."
        )
    else:
        raise _invalid(_bad_item_message(item, field))
    if not field.low <= value <= field.high:
        extra = " (0 and 7 both mean Sunday)" if field.name == "day-of-week" else ""
        raise _invalid(
            f"{field.name.capitalize()} value {value} is out of range; "
            f"use {field.low}-{field.high}{extra}."
        )
    return value


def _bad_item_message(item: str, field: _Field) -> str:
    names = ""
    if field.names:
        first, last = list(field.names)[0], list(field.names)[-1]
        names = f", names {first}-{last}"
    return (
        f"`{item}` is not valid in the {field.name} field. Use a number {field.low}-{field.high}{names}, "
        f"`*`, a range `a-b`, a list `a,b` or a step `*/n`."
    )


def _parse_item(item: str, field: _Field) -> tuple[str, set[int]]:
    """One comma-separated item: its canonical text and the values it matches."""
    if not item:
        raise _invalid(f"The {field.name} field has an empty list item; remove the extra comma.")
    if "#" in item:
        raise _invalid(
            f"`{item}`: `#` (nth weekday of the month) is Quartz syntax and is not supported. "
            f"Use plain weekdays (e.g. `1-5`) or days of the month (e.g. `1,15`)."
        )
    if field.name in ("day-of-month", "day-of-week") and _QUARTZ_ONLY_DAY.fullmatch(item):
        raise _invalid(
            f"`{item}`: `L` (last) and `W` (nearest weekday) are Quartz syntax and are not supported. "
            f"List the days explicitly, e.g. `28` or `1-5`."
        )
    match = _ITEM.fullmatch(item)
    if not match:
        raise _invalid(_bad_item_message(item, field))
    star, start_tok, end_tok, step_tok = match.groups()
    step = None
    if step_tok is not None:
        if not _is_number(step_tok):
            raise _invalid(
                f"Step `/{step_tok}` in the {field.name} field must be a whole number, e.g. `*/5`."
            )
        step = int(step_tok)
        span = field.step_high - field.low
        if not 1 <= step <= span:
            raise _invalid(f"Step `/{step}` in the {field.name} field must be between 1 and {span}.")
    if star:
        low, high, text = field.low, field.step_high, "*"
    else:
        low = _value(start_tok, field, item)
        if end_tok is not None:
            high = _value(end_tok, field, item, range_end=True)
            if high < low:
                raise _invalid(_wrap_message(item, field, start_tok, end_tok))
            text = f"{low}-{high}"
        else:
            if step and low > field.step_high:  # only day-of-week 7: croniter reads `7/n` differently
                raise _invalid(f"`{item}`: start a day-of-week step at 0-6 (Sunday is 0), e.g. `0/2`.")
            high, text = (field.step_high if step else low), str(low)
    if step:
        text += f"/{step}"
    values = set(range(low, high + 1, step or 1))
    if field.name == "day-of-week":
        values = {v % 7 for v in values}
    return text, values


def _wrap_message(item: str, field: _Field, start_tok: str, end_tok: str) -> str:
    start_tok, end_tok = start_tok.upper(), end_tok.upper()
    by_name = {v: k for k, v in field.names.items()} if not _is_number(start_tok) else {}
    top = field.step_high
    low_text, high_text = by_name.get(field.low, str(field.low)), by_name.get(top, str(top))
    first = start_tok if start_tok == high_text else f"{start_tok}-{high_text}"
    second = end_tok if end_tok == low_text else f"{low_text}-{end_tok}"
    return (
        f"Range `{item}` in the {field.name} field runs backwards; cron ranges do not wrap around. "
        f"Write it as two ranges: `{first},{second}`."
    )


def _parse_field(text: str, field: _Field) -> tuple[str, frozenset[int]]:
    texts, values = [], set()
    for item in text.split(","):
        item_text, item_values = _parse_item(item, field)
        texts.append(item_text)
        values |= item_values
    return ",".join(texts), frozenset(values)


def _field_count_message(parts: list[str]) -> str:
    n = len(parts)
    message = f"Cron needs 5 fields ({_FIELDS_HINT}); got {n}. Example: {_EXAMPLE}."
    if n in (6, 7):
        message += (
            " This looks like a Quartz expression with a seconds field: drop the seconds"
            + (" and year" if n == 7 else "")
            + " and write `*` instead of `?`; the app converts it to Quartz for Databricks."
        )
    return message


@functools.lru_cache(maxsize=512)
def parse(expr: str) -> CronSpec:
    """Parse a 5-field Unix cron expression or macro (@hourly, @daily, …).

    Raises UserFacingError(VALIDATION) saying what is wrong and how to fix it.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise _invalid(f"Cron expression is empty. Enter 5 fields ({_FIELDS_HINT}), e.g. {_EXAMPLE}.")
    text = expr.strip()
    macro = None
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise _invalid(
                "`@reboot` is not supported: schedules run on a clock, not when the app starts. "
                "Use e.g. `@daily` or `0 6 * * *`."
            )
        if macro not in MACROS:
            raise _invalid(f"Unknown macro `{text}`. Use one of {', '.join(MACROS)} or a 5-field cron.")
        text = MACROS[macro]
    parts = text.split()
    if len(parts) != 5:
        raise _invalid(_field_count_message(parts))
    if "?" in text:
        raise _invalid("`?` is Quartz syntax; in Unix cron write `*` for \"any day\".")
    parsed = [_parse_field(part, field) for part, field in zip(parts, _UNIX_FIELDS)]
    spec = CronSpec(
        expr=expr.strip(),
        fields=tuple(t for t, _ in parsed),  # type: ignore[arg-type]
        minutes=parsed[0][1], hours=parsed[1][1], days=parsed[2][1],
        months=parsed[3][1], weekdays=parsed[4][1],
        macro=macro,
    )
    _check_day_exists(spec)
    return spec


def _check_day_exists(spec: CronSpec) -> None:
    # With only day-of-month restricted, `31 4` or `30 2` would never fire (croniter gives up after
    # 50 years); with day-of-week also restricted, Unix ORs the two, so the weekdays still fire.
    if spec.dow_restricted or not spec.dom_restricted:
        return
    longest = {m: calendar.monthrange(2024, m)[1] for m in spec.months}  # 2024: February has 29 days
    if any(day <= longest[m] for day in spec.days for m in spec.months):
        return
    months = ", ".join(_MONTHS[m - 1] for m in sorted(spec.months))
    days = ",".join(str(d) for d in sorted(spec.days))
    raise _invalid(
        f"Day {days} never occurs in {months}, so this schedule would never run. "
        f"Pick a day of the month that exists in those months."
    )


def to_zone(timezone: str) -> ZoneInfo:
    """The ZoneInfo for an IANA time zone name such as `Europe/Berlin` or `UTC`.

    Raises UserFacingError(VALIDATION), suggesting the closest name when there is one.
    """
    if not isinstance(timezone, str) or not timezone.strip():
        raise _invalid("Time zone is empty. Pick an IANA name such as `UTC` or `Europe/Berlin`.")
    # Listed names only: ZoneInfo alone also loads `localtime` (the host's zone) and the
    # `right/…` leap-second variants, which Databricks (Java) would not accept.
    if _zone_names().get(timezone.lower()) == timezone:
        return ZoneInfo(timezone)
    message = f"Unknown time zone `{timezone}`. Use an IANA name such as `UTC` or `Europe/Berlin`."
    suggestion = _suggest_zone(timezone)
    if suggestion:
        message += f" Did you mean `{suggestion}`?"
    raise _invalid(message)


# Listed by available_timezones() but not zones: the host's own zone and tzdata's placeholder.
_NOT_ZONES = frozenset({"localtime", "Factory"})


@functools.lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    """Every usable zone name, keyed by its lower-case form (for suggestions)."""
    return {name.lower(): name for name in available_timezones() if name not in _NOT_ZONES}


def _suggest_zone(name: str) -> str | None:
    names = _zone_names()
    key = name.strip().lower().replace(" ", "_")
    if key in names:
        return names[key]
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.8)
    return names[close[0]] if close else None


def validate(expr: str, timezone: str) -> None:
    """Check that a schedule runs on both backends: a valid cron that converts to Quartz, and a known zone.

    Raises UserFacingError(VALIDATION) for the first problem found.
    """
    to_quartz(expr)
    to_zone(timezone)


# --- Quartz (Databricks) -------------------------------------------------------------------------


def to_quartz(expr: str) -> str:
    """Convert a Unix cron expression to the Quartz expression Databricks Jobs expect.

    Seconds `0` is prepended, day-of-week becomes names, and exactly one of day-of-month and
    day-of-week is `?`. Raises UserFacingError(VALIDATION) when both day fields are set.
    """
    spec = parse(expr)
    minute, hour, dom, month, dow_text = spec.fields
    # Only a bare `*` means "any day". Implementations disagree on the rest when the other day
    # field is set: POSIX/Vixie cron OR a range such as `0-6` with the other field but AND a
    # star-led `*/2` with it, while croniter reads any full range as `*`. Refusing both avoids that.
    if dom != "*" and dow_text != "*":
        every_day = " (a range covering every day is not the same as `*`)" if (
            not spec.dom_restricted or not spec.dow_restricted) else ""
        raise _invalid(
            f"`{spec.expr}` sets both day-of-month and day-of-week. Unix cron then runs when EITHER "
            f"matches, which Databricks (Quartz) cannot express. Write `*` in one of them{every_day}, "
            "or create two schedules, one per day field."
        )
    if spec.dow_restricted:
        dow = ",".join(_QUARTZ_DOW[d] for d in sorted(spec.weekdays))
        return f"0 {minute} {hour} ? {month} {dow}"
    return f"0 {minute} {hour} {dom} {month} ?"


_Q_ITEM = re.compile(r"(?:(\*)|([A-Z0-9]+)(?:-([A-Z0-9]+))?)(?:/([0-9]+))?")
_Q_MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_Q_DOWS = {name: i for i, name in enumerate(_QUARTZ_DOW, start=1)}  # Quartz: SUN = 1
# (low, high, names, largest increment), per Quartz's CronExpression.
_Q_FIELDS = (
    (0, 59, {}, 59), (0, 59, {}, 59), (0, 23, {}, 23), (1, 31, {}, 31),
    (1, 12, _Q_MONTHS, 12), (1, 7, _Q_DOWS, 7), (1970, 2099, {}, 129),
)


def _quartz_value(token: str, low: int, high: int, names: dict[str, int]) -> bool:
    if _is_number(token):
        return low <= int(token) <= high
    return token in names


def _quartz_field_ok(text: str, index: int) -> bool:
    low, high, names, max_step = _Q_FIELDS[index]
    if index == 3 and re.fullmatch(r"L(?:W|-[0-9]+)?|[0-9]+W", text):
        digits = re.sub(r"[^0-9]", "", text)
        return not digits or 1 <= int(digits) <= (30 if "-" in text else 31)
    if index == 5 and text == "L":
        return True
    special = re.fullmatch(r"([A-Z0-9]+?)(L|#[1-5])", text) if index == 5 else None
    if special:
        return _quartz_value(special.group(1), low, high, names)
    for item in text.split(","):
        match = _Q_ITEM.fullmatch(item)
        if not match:
            return False
        star, start, end, step = match.groups()
        if step is not None and not 1 <= int(step) <= max_step:
            return False
        if star:
            continue
        if not _quartz_value(start, low, high, names):
            return False
        if end is not None and not _quartz_value(end, low, high, names):
            return False
    return True


def quartz_is_valid(quartz: str) -> bool:
    """Structural check of a Quartz cron expression, as Databricks' CronExpression would accept it.

    6 or 7 fields (sec min hour dom month dow [year]); `?` in exactly one of day-of-month and
    day-of-week; day-of-week 1-7 (SUN = 1) or names; `L`, `W` and `#` only where Quartz allows them.
    """
    if not isinstance(quartz, str):
        return False
    parts = quartz.upper().split()
    if len(parts) not in (6, 7):
        return False
    dom, dow = parts[3], parts[5]
    if (dom == "?") == (dow == "?"):
        return False
    for index, part in enumerate(parts):
        if part == "?" and index in (3, 5):
            continue
        if not _quartz_field_ok(part, index):
            return False
    return True


# --- human-readable preview ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _descriptor_options() -> Options:
    # Fixed locale and 24-hour clock: the preview must not depend on the server's LANG.
    return Options(locale_code="en_US", use_24hour_time_format=True)


def _compact(values: list[int]) -> str:
    """Sorted values as cron text, runs of three or more as ranges: [1, 2, 3, 5] → `1-3,5`."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _weekdays_text(weekdays: frozenset[int]) -> str:
    if len(weekdays) == 7:
        return "*"
    days = sorted(weekdays)
    if {0, 6} <= weekdays and 1 not in weekdays and (5 in weekdays or len(weekdays) == 2):
        days = days[1:] + [7]  # "Friday through Sunday" reads better than "Sunday, Friday, Saturday"
    return _compact(days)


def describe(expr: str) -> str:
    """A one-line English description, e.g. `*/5 * * * *` → "Every 5 minutes".

    Raises UserFacingError(VALIDATION) for invalid input; never raises for valid input.
    """
    spec = parse(expr)
    sets = (spec.minutes, spec.hours, spec.days, spec.months)
    full = [len(values) == size for values, size in zip(sets, (60, 24, 31, 12))]
    # The user's own forms read best; cron_descriptor fails on some mixes (`*` or a step inside a
    # list), so those fall back to the plain values.
    as_written = ["*" if f else text for f, text in zip(full, spec.fields)]
    as_values = ["*" if f else _compact(sorted(values)) for f, values in zip(full, sets)]
    for fields in (as_written, as_values):
        try:
            text = " ".join([*fields, _weekdays_text(spec.weekdays)])
            return ExpressionDescriptor(text, _descriptor_options()).get_description()
        except Exception:  # a cron_descriptor gap must not break the schedule form
            continue
    return f"Cron schedule `{spec.unix}`"


# --- fire times ----------------------------------------------------------------------------------
#
# Daylight-saving policy (Vixie cron's):
# * Schedules that name specific hours (daily, weekly, `0 9-17 * * *`) follow the wall clock and
#   fire once per matching local time. A time skipped by spring-forward (02:30 in Europe/Berlin on
#   the last Sunday of March) fires at the first minute after the gap (03:00 CEST), so a daily job
#   still runs that day. A time repeated by fall-back fires only at its first occurrence.
# * Schedules whose hour field is `*` (every N minutes, hourly) follow real elapsed time: wall
#   times inside the gap do not exist and are skipped, and the repeated hour runs twice, because
#   it really is two hours.
# croniter enumerates matching wall-clock times in naive (zone-less) time; mapping them to
# instants is done here, because croniter's own DST handling misses runs around 30-minute shifts
# (Australia/Lord_Howe). Databricks evaluates the Quartz schedule itself and may differ: its docs
# warn that DST can skip or delay runs and recommend UTC for hourly schedules.

# Longer than any DST fold in use (most are 1 h, Lord Howe 30 min, Antarctica/Troll 2 h).
_FOLD_MARGIN = timedelta(hours=3)


def _aware(value: datetime, name: str) -> datetime:
    """`value` in UTC; refuses naive datetimes, whose meaning would be a guess."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC))")
    # Always compare in UTC: Python never finds an ambiguous local time equal to another zone's.
    return value.astimezone(UTC)


def _wall_to_instants(wall: datetime, zone: ZoneInfo, elapsed: bool) -> list[datetime]:
    """The UTC instants at which wall-clock time `wall` fires, per the DST policy above."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) != wall:  # skipped by spring-forward
        if elapsed:
            return []
        later = wall
        while True:  # the first wall-clock minute after the gap
            later += timedelta(minutes=1)
            instant = later.replace(tzinfo=zone).astimezone(UTC)
            if instant.astimezone(zone).replace(tzinfo=None) == later:
                return [instant]
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return [first, second] if elapsed and second != first else [first]


def _fire_times(
    spec: CronSpec, zone: ZoneInfo, start: datetime, *, backwards: bool = False
) -> Iterator[datetime]:
    """Fire times strictly after (or before) the UTC instant `start`, in order, as UTC datetimes."""
    elapsed = len(spec.hours) == 24
    direction = -1 if backwards else 1
    # An instant just after `start` can carry an earlier wall time when clocks fall back within
    # reach, so start enumerating walls a fold earlier (later, going backwards).
    offset_changes = (start + direction * _FOLD_MARGIN).astimezone(zone).utcoffset() != (
        start.astimezone(zone).utcoffset())
    margin = _FOLD_MARGIN if offset_changes else timedelta(0)
    walls = croniter(_croniter_expr(spec), start.astimezone(zone).replace(tzinfo=None) - direction * margin)
    step = walls.get_prev if backwards else walls.get_next
    # Instants of a fall-back's repeated hour arrive out of order; hold them in a heap (keyed by
    # signed epoch seconds) until no later wall time can produce an instant before them.
    pending: list[int] = []
    last = None
    while True:
        instants = _wall_to_instants(step(datetime), zone, elapsed)
        for instant in instants:
            heapq.heappush(pending, direction * int(instant.timestamp()))
        if not instants:
            continue
        # A wall's earliest instant (latest, going backwards) only moves on from wall to wall,
        # so nothing still to come can precede it.
        bound = direction * int(instants[-1 if backwards else 0].timestamp())
        while pending and pending[0] <= bound:
            key = heapq.heappop(pending)
            if key == last:
                continue
            last = key
            instant = datetime.fromtimestamp(direction * key, UTC)
            if (instant > start) if not backwards else (instant < start):
                yield instant


def next_runs(expr: str, timezone: str, *, after: datetime, count: int = 5) -> list[datetime]:
    """The next `count` fire times strictly after `after`, as aware datetimes in the schedule's zone."""
    if not 1 <= count <= 1000:
        raise ValueError(f"count must be between 1 and 1000, got {count}")
    zone = to_zone(timezone)
    times = _fire_times(parse(expr), zone, _aware(after, "after"))
    return [next(times).astimezone(zone) for _ in range(count)]


def next_run_after(expr: str, timezone: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`, in UTC."""
    return next(_fire_times(parse(expr), to_zone(timezone), _aware(after, "after")))


def previous_run_before(expr: str, timezone: str, before: datetime) -> datetime:
    """The last fire time strictly before `before`, in UTC."""
    return next(_fire_times(parse(expr), to_zone(timezone), _aware(before, "before"), backwards=True))


def _latest_at_or_before(spec: CronSpec, zone: ZoneInfo, moment: datetime) -> datetime:
    # Start a minute later and walk back: a slot exactly at `moment` is included without
    # microsecond arithmetic (croniter works on float timestamps).
    for instant in _fire_times(spec, zone, moment + timedelta(minutes=1), backwards=True):
        if instant <= moment:
            return instant
    raise AssertionError("unreachable: _fire_times is endless")


def missed_slot(expr: str, timezone: str, last_run_at: datetime, now: datetime) -> datetime | None:
    """The latest slot in (last_run_at, now], in UTC, or None when no slot passed since the last run.

    The scheduler calls this at start-up and runs a missed schedule once, however many slots
    passed while the app was down. For a schedule that never ran, pass its creation time.
    """
    last_run_at = _aware(last_run_at, "last_run_at")
    slot = _latest_at_or_before(parse(expr), to_zone(timezone), _aware(now, "now"))
    return slot if slot > last_run_at else None


def backoff(failures: int) -> timedelta:
    """Extra wait after `failures` consecutive failed runs: 2**failures minutes, at most 60."""
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures}")
    if failures == 0:
        return timedelta(0)
    return min(timedelta(minutes=2 ** min(failures, 6)), _BACKOFF_CAP)


def is_due(last_run_at: datetime, now: datetime, expr: str, timezone: str, failures: int = 0) -> bool:
    """Whether a schedule should run now (Redash's `should_schedule_next`).

    Due when the first slot after the last run, delayed by `backoff(failures)`, is at or before
    `now`. However many slots passed, one run brings it up to date. For a schedule that never
    ran, pass its creation time as `last_run_at`.
    """
    slot = next_run_after(expr, timezone, last_run_at)
    return slot + backoff(failures) <= _aware(now, "now")


def nominal_interval(expr: str, timezone: str, around: datetime) -> timedelta:
    """The real time between the slot at or before `around` and the slot after it.

    For a regular cron this is its period; for an irregular one (weekdays only, 9:00 and 17:00)
    it is the gap that applies at `around`, e.g. Friday 9:00 → Monday 9:00 on a Saturday.
    Freshness badges compare a table's age with it.
    """
    spec, zone = parse(expr), to_zone(timezone)
    start = _latest_at_or_before(spec, zone, _aware(around, "around"))
    return next(_fire_times(spec, zone, start)) - start
