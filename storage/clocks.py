"""The SLA clocks' rows as a lead moves: started at handoff, acceptance and a rep's question,
closed (met, missed, ended or cancelled) by verdicts, attempts and answers, snoozed by their
owner; and counted by stage. The scheduler's tick (digests/sla.py) takes their steps, and
the cards show them (handlers/clocks.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import bindparam, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot.core.business_time import Calendar, Company, Span, add_business, business_seconds
from storage import away as stored_away
from storage import leads, policies, verdicts
from storage.calendars import Calendars, calendar_in
from storage.models import (
    Clock,
    ClockChange,
    ClockKind,
    ClockStage,
    EventKind,
    Lead,
    Member,
    SlaPolicy,
)
from storage.sql import add_once

HOUR = 3600.0


def open_by_stage(session: Session) -> dict[str, int]:
    """How many clocks still run, by the stage each reached (running … escalated)."""
    query = (
        select(col(Clock.stage), func.count())
        .where(col(Clock.closed_at).is_(None))
        .group_by(col(Clock.stage))
    )
    return {ClockStage(stage).name: int(n) for stage, n in session.exec(query).all()}


# ---------------------------------------------------------------- starting and closing


def _clock(
    lead: Lead,
    kind: ClockKind,
    owner_id: int,
    policy: SlaPolicy,
    budget: float,
    now: datetime,
    ref: str = "",
) -> Clock:
    return Clock(**_clock_row(lead.id or 0, kind, owner_id, policy, budget, now, ref))


class PolicyFacts(Protocol):
    """What a new clock takes from the SLA policy: a stored `SlaPolicy`, or a row of it."""

    @property
    def version(self) -> int: ...
    @property
    def remind_share(self) -> float: ...
    @property
    def escalate_after_hours(self) -> float: ...


def _clock_row(
    lead_id: int,
    kind: ClockKind,
    owner_id: int,
    policy: PolicyFacts,
    budget: float,
    now: datetime,
    ref: str = "",
) -> dict[str, Any]:
    """A new clock's `sla_clocks` columns."""
    return {
        "lead_id": lead_id,
        "kind": kind.value,
        "ref": ref,
        "owner_id": owner_id,
        "policy_version": policy.version,
        "started_at": now,
        "budget_seconds": budget,
        "remind_share": policy.remind_share,
        "grace_seconds": policy.escalate_after_hours * HOUR,
        "stage": ClockStage.running.value,
        "snoozes": [],
        "next_at": now,
    }


def on_handoff(session: Session, lead: Lead, now: datetime) -> None:
    """A lead reached its owner: the first-touch and verdict clocks start."""
    if lead.owner_id is None:
        return
    policy = policies.current_policy(session)
    for kind, hours in (
        (ClockKind.first_touch, policy.first_touch_hours),
        (ClockKind.verdict, policy.verdict_hours),
    ):
        start_clock(session, clock=_clock(lead, kind, lead.owner_id, policy, hours * HOUR, now))


@dataclass(frozen=True)
class Started:
    """The clocks a handoff started for one owner, as their calendar has them: each clock's
    kind, budget (business seconds) and steps."""

    calendar: Calendar
    clocks: tuple[tuple[ClockKind, float, Steps], ...]


def on_handoffs(
    session: Session,
    handoffs: Sequence[tuple[int, Member]],
    now: datetime,
    company: Company,
    away: Mapping[int, Sequence[Span]] | None = None,
) -> dict[int, Started]:
    """Leads reached their owners (`(lead id, owner)` each): their first-touch and verdict
    clocks start, written in one statement (`on_handoff`, in bulk). Returns, by owner id,
    the clocks started, worked out once per calendar: clocks that start together in one
    owner's business time end together. `away`: the owners' time away, when the caller read
    it already.

    Each clock's first look (`next_at`) is its reminder, worked out here as the tick would
    on its first look at it, so a burst of handoffs costs the tick nothing until then."""
    if not handoffs:
        return {}
    policy = policies.current_policy(session)
    kinds = (
        (ClockKind.first_touch, policy.first_touch_hours * HOUR),
        (ClockKind.verdict, policy.verdict_hours * HOUR),
    )
    share, grace = policy.remind_share, policy.escalate_after_hours * HOUR
    owners = {owner.id or 0: owner for _, owner in handoffs}
    if away is None:
        away = stored_away.away_spans_of(session, member_ids=owners)
    calendars = Calendars(session, company, away)
    # Owners on the same calendar (most of a team) share their steps: worked out once.
    same: dict[Calendar, Started] = {}
    started: dict[int, Started] = {}
    for owner_id, owner in owners.items():
        calendar = calendars.of(owner)
        if calendar not in same:
            same[calendar] = Started(
                calendar,
                tuple(
                    (kind, budget, Steps.starting(calendar, now, budget, share, grace))
                    for kind, budget in kinds
                ),
            )
        started[owner_id] = same[calendar]
    # Plain rows, not Clock objects: building thousands of those costs more than writing.
    leads.start_clocks(
        session,
        rows=[
            {
                "lead_id": lead_id,
                "kind": kind.value,
                "ref": "",
                "owner_id": owner.id or 0,
                "policy_version": policy.version,
                "started_at": now,
                "budget_seconds": budget,
                "remind_share": policy.remind_share,
                "grace_seconds": grace,
                "stage": ClockStage.running.value,
                "snoozes": [],
                "next_at": steps.next_after(ClockStage.running.value),
            }
            for lead_id, owner in handoffs
            for kind, budget, steps in started[owner.id or 0].clocks
        ],
    )
    return started


@dataclass(frozen=True)
class Steps:
    """When a clock reminds, breaches and escalates, in its owner's business time."""

    remind: datetime
    due: datetime
    escalate: datetime

    @classmethod
    def of(cls, clock: ClockFacts, calendar: Calendar) -> Steps:
        return cls.starting(
            with_snoozes(calendar, clock),
            clock.started_at,
            clock.budget_seconds,
            clock.remind_share,
            clock.grace_seconds,
        )

    @classmethod
    def starting(
        cls, calendar: Calendar, start: datetime, budget: float, remind_share: float, grace: float
    ) -> Steps:
        """The steps of a clock of `budget` seconds started at `start` (no snoozes)."""
        due = add_business(calendar, start, budget)
        return cls(
            remind=add_business(calendar, start, budget * remind_share),
            due=due,
            escalate=add_business(calendar, due, grace),
        )

    def next_after(self, stage: int) -> datetime | None:
        pending = {
            ClockStage.running: self.remind,
            ClockStage.reminded: self.due,
            ClockStage.breached: self.escalate,
        }
        return pending.get(ClockStage(stage))


def on_accepted(session: Session, lead: Lead, now: datetime, company: Company) -> None:
    """Accepting ends the verdict clock and starts the attempts clock."""
    close(session, lead, [ClockKind.verdict], now, company)
    if lead.owner_id is None:
        return
    policy = policies.current_policy(session)
    owner = session.get(Member, lead.owner_id)
    if owner is None:
        return
    calendar = calendar_in(session, owner, company)
    day = calendar.day_seconds
    start_clock(
        session,
        clock=_clock(
            lead, ClockKind.attempts, lead.owner_id, policy, policy.attempts_days * day, now
        ),
    )


def on_not_a_fit(session: Session, lead: Lead, now: datetime, company: Company) -> None:
    """A verdict of not a fit ends the verdict clock; the other sales clocks are cancelled."""
    close(session, lead, [ClockKind.verdict], now, company)
    for clock in open_clocks(
        session, lead_id=lead.id or 0, kinds=[ClockKind.first_touch, ClockKind.attempts]
    ):
        _finish(session, clock, now, "cancelled")


def on_attempt(
    session: Session, lead: Lead, now: datetime, company: Company, outcome: str = ""
) -> None:
    """An attempt is a touch; enough of them meet the attempts commitment. A buyer's answer
    (a meeting, an opportunity, a win, a no) ends the follow-up before that: "ended"."""
    close(session, lead, [ClockKind.first_touch], now, company)
    policy = policies.current_policy(session)
    if lead.attempts >= policy.attempts:  # counted by `leads.record_attempt`
        close(session, lead, [ClockKind.attempts], now, company)
    elif outcome in leads.DECISIVE:
        for clock in open_clocks(session, lead_id=lead.id or 0, kinds=[ClockKind.attempts]):
            _finish(session, clock, now, "ended")


def on_question(
    session: Session, lead: Lead, marketer_id: int, question_id: str, now: datetime
) -> None:
    """A rep's question starts the marketer's answer clock."""
    policy = policies.current_policy(session)
    start_clock(
        session,
        clock=_clock(
            lead,
            ClockKind.info_answer,
            marketer_id,
            policy,
            policy.info_answer_hours * HOUR,
            now,
            ref=question_id,
        ),
    )


def on_answer(
    session: Session, lead: Lead, question_id: str, now: datetime, company: Company
) -> None:
    close(session, lead, [ClockKind.info_answer], now, company, ref=question_id)


def close(
    session: Session,
    lead: Lead,
    kinds: list[ClockKind],
    now: datetime,
    company: Company,
    ref: str | None = None,
) -> None:
    """Close open clocks as met (before their deadline) or missed (after it)."""
    for clock in open_clocks(session, lead_id=lead.id or 0, kinds=kinds, ref=ref):
        owner = session.get(Member, clock.owner_id)
        if owner is None:
            _finish(session, clock, now, "cancelled")
            continue
        outcome, clock.business_seconds = closing(clock, calendar_in(session, owner, company), now)
        _finish(session, clock, now, outcome)


def closing(clock: ClockFacts, calendar: Calendar, now: datetime) -> tuple[str, float]:
    """How a clock closed at `now` ends, in its owner's `calendar`: met or missed, and the
    business time it ran (what the digest reports: median and 90th percentile)."""
    calendar = with_snoozes(calendar, clock)
    due = add_business(calendar, clock.started_at, clock.budget_seconds)  # as `sla.Steps.of`
    seconds = business_seconds(calendar, clock.started_at, now)
    return ("met" if now <= due else "missed"), seconds


def accepted(
    session: Session,
    lead: verdicts.LeadRow,
    clocks: Sequence[verdicts.ClockRow],
    calendar_of: Callable[[int], Calendar | None],
    now: datetime,
) -> list[verdicts.ClockRow]:
    """`on_accepted` on the lead's open clocks read already (`calendar_of` a member, None
    when there is no such member): the verdict clock closes, the attempts clock starts.
    Returns the lead's clocks open now, by id."""
    closed = [clock for clock in clocks if clock.kind == ClockKind.verdict]
    for clock in closed:
        calendar = calendar_of(clock.owner_id)
        if calendar is None:
            clock.outcome = "cancelled"
        else:
            clock.outcome, clock.business_seconds = closing(clock, calendar, now)
        clock.closed_at, clock.next_at = now, None
    verdicts.close_clocks(session, clocks=closed)
    still = [clock for clock in clocks if clock.kind != ClockKind.verdict]
    calendar = calendar_of(lead.owner_id) if lead.owner_id is not None else None
    if lead.owner_id is None or calendar is None:
        return still
    policy = verdicts.policy(session)
    budget = policy.attempts_days * calendar.day_seconds
    row = _clock_row(lead.id or 0, ClockKind.attempts, lead.owner_id, policy, budget, now)
    new_id = verdicts.start_clock(session, row=row)
    if new_id is not None:  # else it ran before: shown if still open (it is in `clocks`)
        still.append(
            verdicts.ClockRow(
                id=new_id,
                kind=row["kind"],
                owner_id=lead.owner_id,
                started_at=now,
                budget_seconds=budget,
                remind_share=row["remind_share"],
                grace_seconds=row["grace_seconds"],
                snoozes=[],
            )
        )
    return still


def _finish(session: Session, clock: Clock, now: datetime, outcome: str) -> None:
    clock.closed_at, clock.outcome, clock.next_at = now, outcome, None
    session.add(clock)


# ---------------------------------------------------------------- what a clock is made of


class ClockFacts(Protocol):
    """What a clock's steps are worked out from: a stored `Clock`, or a row of its columns."""

    @property
    def kind(self) -> str: ...
    @property
    def owner_id(self) -> int: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def budget_seconds(self) -> float: ...
    @property
    def remind_share(self) -> float: ...
    @property
    def grace_seconds(self) -> float: ...
    @property
    def snoozes(self) -> list[list[str]]: ...


def with_snoozes(calendar: Calendar, clock: ClockFacts) -> Calendar:
    """A snoozed clock does not count its snoozes, as if its owner were away."""
    snoozed = tuple(
        (datetime.fromisoformat(entry[0]), datetime.fromisoformat(entry[1]))
        for entry in clock.snoozes
    )
    return replace(calendar, away=calendar.away + snoozed)


# ---------------------------------------------------------------- snoozing


class Someone(Protocol):
    """Who did something (a stored member or the person acting): their member id."""

    @property
    def id(self) -> int | None: ...


def snooze(
    session: Session, clock: Clock, *, until: datetime, reason: str, by: Someone, now: datetime
) -> None:
    """Pause a clock until `until`, recorded with its reason; the next tick re-plans it."""
    clock.snoozes = [*clock.snoozes, [now.isoformat(), until.isoformat(), reason]]
    clock.next_at = now
    session.add(clock)
    leads.add_event(
        session,
        lead_id=clock.lead_id,
        kind=EventKind.clock_snoozed,
        now=now,
        member_id=by.id,
        data={"clock": clock.kind, "until": until.isoformat(), "reason": reason},
    )


def start_clock(session: Session, *, clock: Clock) -> Clock | None:
    """Store a new clock; None when this (lead, kind, ref) clock already exists."""
    existing = session.exec(
        select(Clock).where(
            Clock.lead_id == clock.lead_id, Clock.kind == clock.kind, Clock.ref == clock.ref
        )
    ).first()
    if existing is not None or not add_once(session, clock):
        return None
    return clock


def open_clocks(
    session: Session,
    *,
    lead_id: int,
    kinds: Sequence[str],
    ref: str | None = None,
    lock: bool = True,
) -> list[Clock]:
    """The lead's open clocks of these kinds (locked for update unless `lock=False`)."""
    query = select(Clock).where(
        Clock.lead_id == lead_id, col(Clock.kind).in_(list(kinds)), col(Clock.closed_at).is_(None)
    )
    if ref is not None:
        query = query.where(Clock.ref == ref)
    if lock:
        query = query.with_for_update()
    return list(session.exec(query.order_by(col(Clock.id))).all())


def open_clocks_of(session: Session, *, owner_id: int, kind: str) -> list[Clock]:
    """A member's open clocks of one kind, oldest first (what waits for them)."""
    return list(
        session.exec(
            select(Clock)
            .where(Clock.owner_id == owner_id, Clock.kind == kind, col(Clock.closed_at).is_(None))
            .order_by(col(Clock.started_at))
        ).all()
    )


@cache
def _due_clocks_query(limit: int) -> SelectOfScalar[Clock]:
    """Built once per limit, with `now` as a parameter: a statement object keeps its cache
    key, so an empty tick does not pay for building and keying the query every time."""
    return (
        select(Clock)
        .where(col(Clock.next_at) <= bindparam("now"), col(Clock.closed_at).is_(None))
        .order_by(col(Clock.next_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


_ANY_DUE = (
    sa_select(Clock.__table__.c.id)  # type: ignore[attr-defined]
    .where(Clock.__table__.c.next_at <= bindparam("now"))  # type: ignore[attr-defined]
    .where(Clock.__table__.c.closed_at.is_(None))  # type: ignore[attr-defined]
    .limit(1)
)


def any_due_clock(session: Session, *, now: datetime) -> bool:
    """Whether any clock is due, as one plain indexed query: most ticks find nothing, and
    then need neither the ORM nor row locks."""
    return session.connection().execute(_ANY_DUE, {"now": now}).first() is not None


def due_clocks(session: Session, *, now: datetime, limit: int) -> list[Clock]:
    """Open clocks whose next step is due, locked for this transaction.

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several instances tick at once, each
    taking different rows; a crashed instance's locks vanish with its transaction.
    """
    return list(session.exec(_due_clocks_query(limit), params={"now": now}).all())


_CLOCK_TABLE = Clock.__table__  # type: ignore[attr-defined]

_UPDATE_CLOCKS = update(_CLOCK_TABLE).where(_CLOCK_TABLE.c.id == bindparam("clock_id"))


def update_clocks(session: Session, *, changes: Sequence[ClockChange]) -> None:
    """Write where a tick leaves its clocks (locked by `due_clocks`): one executemany UPDATE,
    whatever each change is. The Clock objects in the session are not updated."""
    if not changes:
        return
    session.connection().execute(
        _UPDATE_CLOCKS,
        [
            {
                "clock_id": change.clock_id,
                "stage": change.stage,
                "next_at": change.next_at,
                "closed_at": change.closed_at,
                "outcome": change.outcome,
                "business_seconds": change.business_seconds,
            }
            for change in changes
        ],
    )
