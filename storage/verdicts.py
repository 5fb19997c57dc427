"""A press of Accept in plain Core statements: the lead moved and read back in one UPDATE,
then only the columns the clocks and the card need, with no ORM objects (a click costs a
few milliseconds of CPU, and at 100 clicks/s that decides whether the process keeps up)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session

from storage.models import (
    Away,
    Campaign,
    CardLocation,
    Clock,
    EventKind,
    Holiday,
    Lead,
    LeadDefinition,
    LeadEvent,
    LeadState,
    Member,
    SlaPolicy,
)

_LEADS: Any = Lead.__table__  # type: ignore[attr-defined]
_MEMBERS: Any = Member.__table__  # type: ignore[attr-defined]
_EVENTS: Any = LeadEvent.__table__  # type: ignore[attr-defined]
_CLOCKS: Any = Clock.__table__  # type: ignore[attr-defined]
_AWAY: Any = Away.__table__  # type: ignore[attr-defined]
_HOLIDAYS: Any = Holiday.__table__  # type: ignore[attr-defined]
_POLICIES: Any = SlaPolicy.__table__  # type: ignore[attr-defined]
_CAMPAIGNS: Any = Campaign.__table__  # type: ignore[attr-defined]
_DEFINITIONS: Any = LeadDefinition.__table__  # type: ignore[attr-defined]
_LOCATIONS: Any = CardLocation.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LeadRow:
    """The columns of a lead its card and clocks read."""

    id: int | None
    name: str
    company: str | None
    email: str | None
    title: str | None
    source: str
    state: str
    attributes: dict[str, Any]
    created_at: datetime
    handed_off_at: datetime | None
    owner_id: int | None
    campaign_id: int | None
    definition_id: int


@dataclass(frozen=True)
class Accepted:
    """A lead just accepted, with its campaign's name and its lead definition's version."""

    lead: LeadRow
    campaign: str | None
    version: int | None


@dataclass(frozen=True)
class PolicyRow:
    """What a new clock takes from the SLA policy in force."""

    version: int
    attempts_days: float
    remind_share: float
    escalate_after_hours: float


@dataclass(frozen=True)
class MemberRow:
    """The columns of a member a card and a calendar read."""

    id: int | None
    name: str
    timezone: str | None
    manager_id: int | None
    work_start: str | None
    work_end: str | None
    workdays: str | None


@dataclass
class ClockRow:
    """An open SLA clock, as its steps and closing read it."""

    id: int
    kind: str
    owner_id: int
    started_at: datetime
    budget_seconds: float
    remind_share: float
    grace_seconds: float
    snoozes: list[list[str]]
    closed_at: datetime | None = None
    outcome: str | None = None
    next_at: datetime | None = None
    business_seconds: float | None = None


@dataclass(frozen=True)
class EventRow:
    """A lead's event, as its card reads it."""

    kind: str
    member_id: int | None
    at: datetime
    data: dict[str, Any]


_LEAD_COLUMNS = [_LEADS.c[name] for name in LeadRow.__dataclass_fields__]
_MEMBER_COLUMNS = [_MEMBERS.c[name] for name in MemberRow.__dataclass_fields__]
_CLOCK_COLUMNS = [_CLOCKS.c[name] for name in list(ClockRow.__dataclass_fields__)[:8]]

_NOW = bindparam("now", type_=_LEADS.c.verdict_at.type)
# The owner, or the owner's manager (`handlers.common.may_act_on`), on a lead still handed
# off: anything else changes nothing and is answered the long way.
_ACCEPT = (
    update(_LEADS)
    .where(
        _LEADS.c.id == bindparam("the_lead"),
        _LEADS.c.state == LeadState.handed_off.value,
        or_(
            _LEADS.c.owner_id == bindparam("actor"),
            _LEADS.c.owner_id.in_(
                select(_MEMBERS.c.id).where(_MEMBERS.c.manager_id == bindparam("actor"))
            ),
        ),
    )
    .values(state=LeadState.accepted.value, verdict_at=func.coalesce(_LEADS.c.verdict_at, _NOW))
    .returning(
        *_LEAD_COLUMNS,
        select(_CAMPAIGNS.c.name)
        .where(_CAMPAIGNS.c.id == _LEADS.c.campaign_id)
        .correlate(_LEADS)
        .scalar_subquery(),
        select(_DEFINITIONS.c.version)
        .where(_DEFINITIONS.c.id == _LEADS.c.definition_id)
        .correlate(_LEADS)
        .scalar_subquery(),
    )
)
_ADD_EVENT = _EVENTS.insert()
_OPEN_CLOCKS = (
    select(*_CLOCK_COLUMNS)
    .where(_CLOCKS.c.lead_id == bindparam("the_lead"), _CLOCKS.c.closed_at.is_(None))
    .order_by(_CLOCKS.c.id)
)
_OPEN_CLOCKS_LOCKED = _OPEN_CLOCKS.with_for_update()
_CLOSE_CLOCK = (
    update(_CLOCKS)
    .where(_CLOCKS.c.id == bindparam("clock_id"))
    .values(
        closed_at=bindparam("closed"),
        outcome=bindparam("the_outcome"),
        next_at=None,
        business_seconds=bindparam("seconds"),
    )
)
_MEMBERS_AWAY = (
    select(*_MEMBER_COLUMNS, _AWAY.c.starts_at, _AWAY.c.until)
    .select_from(_MEMBERS.outerjoin(_AWAY, _AWAY.c.member_id == _MEMBERS.c.id))
    .where(_MEMBERS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_MEMBERS.c.id, _AWAY.c.starts_at, _AWAY.c.id)
)
_MEMBER_BY_SLACK_ID = select(_MEMBERS).where(_MEMBERS.c.slack_user_id == bindparam("user_id"))
_HOLIDAY_DAYS = select(_HOLIDAYS.c.day).order_by(_HOLIDAYS.c.day)
_POLICY = (
    select(*[_POLICIES.c[name] for name in PolicyRow.__dataclass_fields__])
    .order_by(_POLICIES.c.version.desc())
    .limit(1)
)
_EVENTS_OF = (
    select(_EVENTS.c.kind, _EVENTS.c.member_id, _EVENTS.c.at, _EVENTS.c.data)
    .where(_EVENTS.c.lead_id == bindparam("the_lead"))
    .order_by(_EVENTS.c.at, _EVENTS.c.id)
)
_LOCATIONS_OF = (
    select(_LOCATIONS)
    .where(_LOCATIONS.c.lead_id == bindparam("the_lead"), _LOCATIONS.c.purpose == bindparam("p"))
    .order_by(_LOCATIONS.c.id)
)


def member_by_slack_id(session: Session, *, user_id: str) -> Member | None:
    """The member with this Slack user id (`stored_members.member_by`), read without the ORM."""
    row = session.connection().execute(_MEMBER_BY_SLACK_ID, {"user_id": user_id}).first()
    if row is None:
        return None
    member = Member(**row._mapping)
    make_transient_to_detached(member)  # as if loaded by a session since closed
    return member


def accept(session: Session, *, lead_id: int, actor_id: int, now: datetime) -> Accepted | None:
    """Accept the lead for `actor_id` if they may (its owner or the owner's manager) and it
    is still handed off, atomically (a conditional UPDATE: of two racing presses, one
    wins); its verdict time is set if it had none. The lead as it is now, or None when
    nothing changed (no such lead, not theirs, already decided: the caller finds out)."""
    session.flush()
    row = (
        session.connection()
        .execute(_ACCEPT, {"the_lead": lead_id, "actor": actor_id, "now": now})
        .first()
    )
    if row is None:
        return None
    columns = len(_LEAD_COLUMNS)
    return Accepted(LeadRow(*row[:columns]), row[columns], row[columns + 1])


def add_event(
    session: Session,
    *,
    lead_id: int,
    kind: EventKind,
    member_id: int | None,
    at: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    """Append an event to the lead's log (its id is not needed back)."""
    session.connection().execute(
        _ADD_EVENT,
        {
            "lead_id": lead_id,
            "kind": kind.value,
            "member_id": member_id,
            "at": at,
            "data": data or {},
        },
    )


def open_clocks(session: Session, *, lead_id: int) -> list[ClockRow]:
    """The lead's open clocks, by id, locked for this transaction (on PostgreSQL)."""
    connection = session.connection()
    locked = connection.dialect.name == "postgresql"
    statement = _OPEN_CLOCKS_LOCKED if locked else _OPEN_CLOCKS
    return [ClockRow(*row) for row in connection.execute(statement, {"the_lead": lead_id})]


def close_clocks(session: Session, *, clocks: Sequence[ClockRow]) -> None:
    """Write the closing of these clocks (`closed_at`, `outcome`, `business_seconds`)."""
    if clocks:
        session.connection().execute(
            _CLOSE_CLOCK,
            [
                {
                    "clock_id": clock.id,
                    "closed": clock.closed_at,
                    "the_outcome": clock.outcome,
                    "seconds": clock.business_seconds,
                }
                for clock in clocks
            ],
        )


def start_clock(session: Session, *, row: dict[str, Any]) -> int | None:
    """Start a clock (a row of `sla_clocks` columns); its id, or None when this (lead, kind,
    ref) clock exists already, which is left as it is."""
    connection = session.connection()
    new_id: int | None = connection.execute(_start_clock(connection.dialect.name), row).scalar()
    return new_id


@cache
def _start_clock(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_CLOCKS).on_conflict_do_nothing().returning(_CLOCKS.c.id)


def members(
    session: Session, *, ids: Collection[int]
) -> tuple[dict[int, MemberRow], dict[int, list[tuple[datetime, datetime]]]]:
    """These members by id (ids that match nobody are left out), and each one's time away
    (`stored_away.away_spans_of`), in one query."""
    found: dict[int, MemberRow] = {}
    away: dict[int, list[tuple[datetime, datetime]]] = {}
    if not ids:
        return found, away
    columns = len(_MEMBER_COLUMNS)
    for row in session.connection().execute(_MEMBERS_AWAY, {"ids": sorted(ids)}):
        member_id, starts_at, until = row[0], row[columns], row[columns + 1]
        if member_id not in found:
            found[member_id], away[member_id] = MemberRow(*row[:columns]), []
        if starts_at is not None and until > starts_at:
            away[member_id].append((starts_at, until))
    return found, away


def holidays(session: Session) -> list[date]:
    return [row[0] for row in session.connection().execute(_HOLIDAY_DAYS)]


def policy(session: Session) -> PolicyRow:
    """What new clocks take from the SLA policy in force (`policies.current_policy`)."""
    row = session.connection().execute(_POLICY).first()
    if row is None:
        raise LookupError("no SLA policy: run `liaison db upgrade`")
    return PolicyRow(*row)


def events_of(session: Session, *, lead_id: int) -> list[EventRow]:
    """The lead's events, oldest first (`leads.events_of`)."""
    rows = session.connection().execute(_EVENTS_OF, {"the_lead": lead_id})
    return [EventRow(*row) for row in rows]


def locations_of(session: Session, *, lead_id: int, purpose: str) -> list[CardLocation]:
    """Where cards of `purpose` about the lead were posted (`places.locations_of`), as
    detached rows."""
    session.flush()  # a location this transaction recorded through the ORM counts too
    rows = session.connection().execute(_LOCATIONS_OF, {"the_lead": lead_id, "p": purpose})
    return [CardLocation(**row._mapping) for row in rows]
