"""Business time with `now` injected: time zones, DST, holidays, time away, quiet hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.business_time import (
    Calendar,
    add_business,
    business_seconds,
    is_working,
    next_working_moment,
)

HOUR = 3600.0
LONDON = Calendar(tz="Europe/London")
NEW_YORK = Calendar(tz="America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_four_business_hours_from_a_monday_afternoon_end_tuesday_morning() -> None:
    # Mon 23 Nov 2026, 15:00 London (= UTC in winter): 2 h today, 2 h on Tuesday.
    assert add_business(LONDON, utc(2026, 11, 23, 15), 4 * HOUR) == utc(2026, 11, 24, 11)


def test_a_friday_evening_handoff_counts_from_monday_morning() -> None:
    assert add_business(LONDON, utc(2026, 11, 27, 18), 1 * HOUR) == utc(2026, 11, 30, 10)


def test_new_york_hours_are_local_hours() -> None:
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
    assert next_working_moment(NEW_YORK, utc(2026, 11, 23, 6)) == utc(2026, 11, 23, 14)
    assert next_working_moment(NEW_YORK, utc(2026, 7, 6, 6)) == utc(2026, 7, 6, 13)


def test_dst_spring_forward_keeps_the_local_working_day() -> None:
    # Europe/London moves to BST on Sun 29 Mar 2026; Monday starts at 09:00 BST = 08:00 UTC.
    assert next_working_moment(LONDON, utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 8)
    # A full working day is still 8 hours on either side of the change.
    assert business_seconds(LONDON, utc(2026, 3, 27, 0), utc(2026, 3, 28, 0)) == 8 * HOUR
    assert business_seconds(LONDON, utc(2026, 3, 30, 0), utc(2026, 3, 31, 0)) == 8 * HOUR


def test_dst_fall_back_in_new_york() -> None:
    # US clocks fall back on Sun 1 Nov 2026: Fri 17:00 EDT = 21:00 UTC, Mon 09:00 EST = 14:00.
    friday_close = utc(2026, 10, 30, 21)
    assert add_business(NEW_YORK, friday_close - timedelta(hours=1), 2 * HOUR) == utc(
        2026, 11, 2, 15
    )


def test_holidays_are_skipped() -> None:
    christmas = Calendar(tz="Europe/London", holidays=frozenset({date(2026, 12, 25)}))
    # Thu 24 Dec 16:00 + 2 h: one hour on Thursday, Friday is a holiday, one hour on Monday.
    assert add_business(christmas, utc(2026, 12, 24, 16), 2 * HOUR) == utc(2026, 12, 28, 10)


def test_time_away_pauses_the_clock() -> None:
    away = ((utc(2026, 11, 24, 0), utc(2026, 11, 26, 0)),)  # Tuesday and Wednesday
    cal = Calendar(tz="Europe/London", away=away)
    assert add_business(cal, utc(2026, 11, 23, 16), 2 * HOUR) == utc(2026, 11, 26, 10)
    assert not is_working(cal, utc(2026, 11, 24, 12))
    assert business_seconds(cal, utc(2026, 11, 23, 0), utc(2026, 11, 27, 0)) == 16 * HOUR


def test_quiet_hours() -> None:
    assert is_working(LONDON, utc(2026, 11, 23, 9))
    assert not is_working(LONDON, utc(2026, 11, 23, 17))  # closing time is outside
    assert not is_working(LONDON, utc(2026, 11, 28, 12))  # Saturday
    assert next_working_moment(LONDON, utc(2026, 11, 23, 12, 30)) == utc(2026, 11, 23, 12, 30)


def test_custom_hours_and_weekdays() -> None:
    cal = Calendar(
        tz="Asia/Dubai", start=time(8), end=time(16), weekdays=frozenset({0, 1, 2, 3, 4})
    )
    assert next_working_moment(cal, utc(2026, 11, 23, 2)) == utc(2026, 11, 23, 4)
    with pytest.raises(ValueError):
        Calendar(start=time(17), end=time(9))
    with pytest.raises(ValueError):
        add_business(Calendar(weekdays=frozenset()), utc(2026, 1, 1), HOUR)


moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)
zones = st.sampled_from(
    ["UTC", "Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
)


@settings(max_examples=200, deadline=None)
@given(start=moments, hours=st.floats(min_value=0, max_value=200), tz=zones)
def test_adding_then_measuring_gives_the_same_business_time(
    start: datetime, hours: float, tz: str
) -> None:
    cal = Calendar(tz=tz)
    deadline = add_business(cal, start, hours * HOUR)
    assert deadline >= start
    assert business_seconds(cal, start, deadline) == pytest.approx(hours * HOUR, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(a=moments, b=moments, c=moments, tz=zones)
def test_business_time_adds_up_over_consecutive_periods(
    a: datetime, b: datetime, c: datetime, tz: str
) -> None:
    a, b, c = sorted([a, b, c])
    cal = Calendar(tz=tz)
    whole = business_seconds(cal, a, c)
    assert whole == pytest.approx(business_seconds(cal, a, b) + business_seconds(cal, b, c))
    assert whole <= (c - a).total_seconds()
