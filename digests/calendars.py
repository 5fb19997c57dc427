"""Each member's business-time calendar, from their settings, holidays and time away."""

from __future__ import annotations

from datetime import date, time

from sqlmodel import Session

from digests.business_time import Calendar
from storage import queries
from storage.models import Member

DEFAULT_START, DEFAULT_END = time(9, 0), time(17, 0)


def _clock(text: str | None, default: time) -> time:
    """`HH:MM` local time; `24:00` is the very end of the day (round-the-clock teams)."""
    if not text:
        return default
    if text == "24:00":
        return time.max
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes or 0))


class Calendars:
    """Calendars for one pass of the scheduler: holidays read once, each member's once."""

    def __init__(self, session: Session, company_tz: str) -> None:
        self.session = session
        self.company_tz = company_tz
        self.holidays = frozenset(queries.holidays(session))
        self.known: dict[int, Calendar] = {}

    def of(self, member: Member) -> Calendar:
        key = member.id or 0
        if key not in self.known:
            self.known[key] = calendar_of(self.session, member, self.company_tz, self.holidays)
        return self.known[key]


def calendar_of(
    session: Session,
    member: Member,
    company_tz: str,
    holidays: frozenset[date] | None = None,
) -> Calendar:
    """The member's time zone (else the company's), working hours, holidays and away."""
    weekdays = (
        frozenset(int(d) for d in member.workdays.split(",") if d.strip())
        if member.workdays
        else frozenset({0, 1, 2, 3, 4})
    )
    return Calendar(
        tz=member.timezone or company_tz,
        start=_clock(member.work_start, DEFAULT_START),
        end=_clock(member.work_end, DEFAULT_END),
        weekdays=weekdays,
        holidays=holidays if holidays is not None else frozenset(queries.holidays(session)),
        away=tuple(queries.away_spans(session, member_id=member.id or 0)),
    )
