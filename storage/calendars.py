"""Business-time calendars: each member's, from their settings, holidays and time away; and
the company's working week, that business days of approvals are counted in."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlmodel import Session

from bot.core.business_time import Calendar, Company, Span, add_business, parse_clock
from storage import away as stored_away
from storage.models import Member


class WorkingWeek(Protocol):
    """What a member's calendar is made of: a stored `Member`, or a row of its columns."""

    @property
    def id(self) -> int | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def work_start(self) -> str | None: ...
    @property
    def work_end(self) -> str | None: ...
    @property
    def workdays(self) -> str | None: ...


# A session whose `info` holds a dict under this key keeps the calendars read in it there,
# by member: for sessions that only read calendars (the outbox renders many cards about
# the same reps in one), never for one that may change time away or holidays.
CALENDARS_READ = "liaison.calendars"


class Calendars:
    """Calendars for one pass of the scheduler: holidays read once, each member's once.

    `away` is the time away of the members already read (by member id); the others' is read
    when their calendar is first wanted."""

    def __init__(
        self,
        session: Session,
        company: Company,
        away: Mapping[int, Sequence[Span]] | None = None,
        holidays: Collection[date] | None = None,
    ) -> None:
        self.session = session
        self.company = company
        self.holidays = frozenset(stored_away.holidays(session) if holidays is None else holidays)
        self.away = dict(away or {})
        self.known: dict[int, Calendar] = {}

    def of(self, member: WorkingWeek) -> Calendar:
        key = member.id or 0
        if key not in self.known:
            self.known[key] = calendar_of(
                self.session, member, self.company, self.holidays, away=self.away.get(key)
            )
        return self.known[key]


SESSION_KEY = "liaison.calendars"  # in `Session.info`: the transaction's Calendars


def remember_calendars(session: Session, company: Company) -> None:
    """For a transaction that changes no member's working time, holiday or time away (a
    verdict, an attempt): each member's calendar is read once in it (`calendar_in`), not
    once per clock closed, started and shown on the card."""
    session.info[SESSION_KEY] = Calendars(session, company)


def calendar_in(session: Session, member: Member, company: Company) -> Calendar:
    """`calendar_of`, read once per transaction when it asked so (`remember_calendars`)."""
    calendars = session.info.get(SESSION_KEY)
    if isinstance(calendars, Calendars) and calendars.company == company:
        return calendars.of(member)
    return calendar_of(session, member, company)


def calendar_of(
    session: Session,
    member: WorkingWeek,
    company: Company,
    holidays: frozenset[date] | None = None,
    away: Sequence[Span] | None = None,
) -> Calendar:
    """The member's time zone, working hours and weekdays (else the company's), holidays
    and time away (read here unless given)."""
    kept = session.info.get(CALENDARS_READ) if holidays is None and away is None else None
    if kept is not None:
        key = (member.id, member.timezone, member.work_start, member.work_end, member.workdays)
        found: tuple[Company, Calendar] | None = kept.get(key)
        if found is None or found[0] != company:
            found = kept[key] = (company, _calendar(session, member, company, None, None))
        return found[1]
    return _calendar(session, member, company, holidays, away)


def _calendar(
    session: Session,
    member: WorkingWeek,
    company: Company,
    holidays: frozenset[date] | None,
    away: Sequence[Span] | None,
) -> Calendar:
    weekdays = (
        frozenset(int(d) for d in member.workdays.split(",") if d.strip())
        if member.workdays
        else company.weekdays
    )
    return Calendar(
        tz=member.timezone or company.tz,
        start=parse_clock(member.work_start) if member.work_start else company.start,
        end=parse_clock(member.work_end) if member.work_end else company.end,
        weekdays=weekdays,
        holidays=holidays if holidays is not None else frozenset(stored_away.holidays(session)),
        away=tuple(
            away if away is not None else stored_away.away_spans(session, member_id=member.id or 0)
        ),
    )


def company_calendar(session: Session, company: Company) -> Calendar:
    """The company's working week (its hours, weekdays and holidays) that business days of
    approvals are counted in."""
    return Calendar(
        tz=company.tz,
        start=company.start,
        end=company.end,
        weekdays=company.weekdays,
        holidays=frozenset(stored_away.holidays(session)),
    )


def one_business_day_after(session: Session, moment: datetime, company: Company) -> datetime:
    """The same time on the next business day (as business time: a working day's length)."""
    calendar = company_calendar(session, company)
    opens = timedelta(hours=calendar.start.hour, minutes=calendar.start.minute)
    closes = timedelta(
        hours=calendar.end.hour,
        minutes=calendar.end.minute,
        seconds=calendar.end.second,
        microseconds=calendar.end.microsecond,
    )
    try:
        return add_business(calendar, moment, (closes - opens).total_seconds())
    except ValueError:  # a company week without any working time: a calendar day then
        return moment + timedelta(days=1)
