"""Business time: working hours in a member's time zone, minus holidays and time away.

Pure functions of their arguments (time is a parameter), so SLA clocks, quiet hours and
`liaison tick --at` all agree. Every datetime in and out is timezone-aware UTC; the
calendar converts to local wall-clock time per day, so DST changes move the UTC hours of
a working day, never its local hours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HORIZON_DAYS = 3 * 366  # a calendar with no working day at all must still terminate
Span = tuple[datetime, datetime]
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONDAY_TO_FRIDAY = frozenset({0, 1, 2, 3, 4})


def parse_clock(text: str) -> time:
    """`HH:MM` local time; `24:00` is the very end of the day (round-the-clock teams)."""
    text = text.strip()
    return time.max if text == "24:00" else time.fromisoformat(text)


def parse_hours(text: str) -> tuple[time, time]:
    """`08:30-17:00` → (08:30, 17:00); ValueError naming the mistake otherwise."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"{text!r}: use HH:MM-HH:MM, e.g. 08:30-17:00")
    try:
        start, end = parse_clock(parts[0]), parse_clock(parts[1])
    except ValueError:
        raise ValueError(f"{text!r}: use HH:MM-HH:MM, e.g. 08:30-17:00") from None
    if end <= start:
        raise ValueError(f"{text!r}: working hours must end after they start")
    return start, end


def format_clock(moment: time) -> str:
    return "24:00" if moment == time.max else moment.strftime("%H:%M")


def parse_workdays(text: str) -> frozenset[int]:
    """`mon-fri` or `sun,mon,tue` → {0, 1, 2, 3, 4} (Monday = 0); ValueError otherwise."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"{text!r}: use day names like mon-fri or sun,mon")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


@dataclass(frozen=True)
class Company:
    """The company's defaults — time zone, working hours, working weekdays — which each
    member's own settings override (`LIAISON_TIMEZONE`, `LIAISON_WORK_HOURS`,
    `LIAISON_WORKDAYS`)."""

    tz: str = "UTC"
    start: time = time(9, 0)
    end: time = time(17, 0)
    weekdays: frozenset[int] = MONDAY_TO_FRIDAY


@dataclass(frozen=True)
class Schedule:
    """When a weekly post (the digest) goes out: a weekday and a local time in a time zone."""

    weekday: int = 0  # Monday
    at: time = time(8, 30)
    tz: str = "UTC"

    @classmethod
    def parse(cls, text: str, tz: str) -> Schedule:
        """`mon 08:30` (the default); ValueError naming the mistake otherwise."""
        day, _, clock = text.strip().lower().partition(" ")
        if day[:3] not in DAY_NAMES:
            raise ValueError(f"{text!r}: use a day and a time, e.g. mon 08:30")
        try:
            at = time.fromisoformat(clock.strip())
        except ValueError:
            raise ValueError(f"{text!r}: use a day and a time, e.g. mon 08:30") from None
        return cls(DAY_NAMES.index(day[:3]), at, tz)

    def due(self, week_end: datetime) -> datetime:
        """When the digest of the week ending at `week_end` is due: on the schedule's day
        of the following week."""
        zone = ZoneInfo(self.tz)
        monday = week_end.astimezone(zone).date()
        return datetime.combine(monday + timedelta(days=self.weekday), self.at, tzinfo=zone)


@dataclass(frozen=True)
class Calendar:
    """When one member works: local hours on working weekdays, holidays, time away."""

    tz: str = "UTC"
    start: time = time(9, 0)
    end: time = time(17, 0)
    weekdays: frozenset[int] = MONDAY_TO_FRIDAY  # Monday = 0
    holidays: frozenset[date] = frozenset()
    away: tuple[Span, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("working hours must end after they start")

    @property
    def day_seconds(self) -> float:
        """The length of a full working day, in seconds."""
        start = timedelta(hours=self.start.hour, minutes=self.start.minute)
        end = timedelta(hours=self.end.hour, minutes=self.end.minute)
        return (end - start).total_seconds()

    def day_span(self, day: date) -> Span | None:
        """The working hours of a local date, in UTC, or None on a day off."""
        if day.weekday() not in self.weekdays or day in self.holidays:
            return None
        zone = ZoneInfo(self.tz)
        opens = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
        closes = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
        return opens, closes


def _local_date(calendar: Calendar, moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(calendar.tz)).date()


def _minus_away(span: Span, away: Sequence[Span]) -> Iterator[Span]:
    """The parts of `span` not covered by any time-away span."""
    pieces = [span]
    for gone_from, gone_until in away:
        next_pieces = []
        for lo, hi in pieces:
            if gone_until <= lo or gone_from >= hi:
                next_pieces.append((lo, hi))
                continue
            if lo < gone_from:
                next_pieces.append((lo, gone_from))
            if gone_until < hi:
                next_pieces.append((gone_until, hi))
        pieces = next_pieces
    yield from pieces


def working_spans(calendar: Calendar, since: datetime) -> Iterator[Span]:
    """Working time from `since` onwards, in order, as UTC spans (bounded horizon)."""
    day = _local_date(calendar, since) - timedelta(days=1)
    for _ in range(HORIZON_DAYS):
        span = calendar.day_span(day)
        day += timedelta(days=1)
        if span is None or span[1] <= since:
            continue
        clipped = (max(span[0], since), span[1])
        yield from _minus_away(clipped, calendar.away)


def business_seconds(calendar: Calendar, start: datetime, end: datetime) -> float:
    """Working seconds between two moments (0 when `end` is not after `start`)."""
    total = 0.0
    if end <= start:
        return total
    for lo, hi in working_spans(calendar, start):
        if lo >= end:
            break
        total += (min(hi, end) - lo).total_seconds()
    return total


def add_business(calendar: Calendar, start: datetime, seconds: float) -> datetime:
    """The moment `seconds` of working time after `start` (a deadline)."""
    left = seconds
    for lo, hi in working_spans(calendar, start):
        length = (hi - lo).total_seconds()
        if left <= length:
            return lo + timedelta(seconds=left)
        left -= length
    raise ValueError("the calendar has no working time within the horizon")


def is_working(calendar: Calendar, moment: datetime) -> bool:
    """True during the member's working hours (and not away)."""
    return next_working_moment(calendar, moment) == moment


def next_working_moment(calendar: Calendar, moment: datetime) -> datetime:
    """`moment` itself inside working hours, else when the next working period starts.

    This is when a DM may go out: nothing is sent outside a member's working hours.
    """
    for lo, _ in working_spans(calendar, moment):
        return max(lo, moment)
    raise ValueError("the calendar has no working time within the horizon")
