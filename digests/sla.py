"""SLA clocks: started and closed by what happens to a lead, advanced by the scheduler tick.

A clock is a row. The tick claims the clocks whose next step is due, decides with `now`
passed in (reminder at a share of the window, breach at the deadline, escalation to the
manager after the grace period), and writes the private messages to the outbox in the
same transaction, so a step is taken — and its message owed — exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session

from bot.messages import Button, Card, Field_, card_to_dict
from bot.text import text_for, when
from digests.business_time import (
    Calendar,
    Company,
    Span,
    add_business,
    business_seconds,
    next_working_moment,
)
from digests.calendars import Calendars, calendar_in
from storage import queries, verdicts
from storage.db import Store
from storage.models import (
    Clock,
    ClockChange,
    ClockKind,
    ClockStage,
    EventKind,
    Lead,
    Member,
    NewMessage,
    SlaPolicy,
)

log = logging.getLogger(__name__)
HOUR = 3600.0


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
    policy = queries.current_policy(session)
    for kind, hours in (
        (ClockKind.first_touch, policy.first_touch_hours),
        (ClockKind.verdict, policy.verdict_hours),
    ):
        queries.start_clock(
            session, clock=_clock(lead, kind, lead.owner_id, policy, hours * HOUR, now)
        )


def on_handoffs(
    session: Session,
    handoffs: Sequence[tuple[int, Member]],
    now: datetime,
    company: Company,
    away: Mapping[int, Sequence[Span]] | None = None,
) -> dict[int, list[str]]:
    """Leads reached their owners (`(lead id, owner)` each): their first-touch and verdict
    clocks start, written in one statement (`on_handoff`, in bulk). Returns each lead's
    clock lines as `status_lines` shows them now, worked out once per owner: clocks that
    start together in one owner's business time end together. `away`: the owners' time
    away, when the caller read it already.

    Each clock's first look (`next_at`) is its reminder, worked out here as the tick would
    on its first look at it, so a burst of handoffs costs the tick nothing until then."""
    if not handoffs:
        return {}
    policy = queries.current_policy(session)
    kinds = (
        (ClockKind.first_touch, policy.first_touch_hours * HOUR),
        (ClockKind.verdict, policy.verdict_hours * HOUR),
    )
    grace = policy.escalate_after_hours * HOUR
    owners = {owner.id or 0: owner for _, owner in handoffs}
    if away is None:
        away = queries.away_spans_of(session, member_ids=owners)
    calendars = Calendars(session, company, away)
    # Owners on the same calendar (most of a team) share their steps and lines: worked
    # out once.
    same: dict[Calendar, tuple[list[Steps], list[str]]] = {}
    starts: dict[int, tuple[list[Steps], list[str]]] = {}
    for owner_id, owner in owners.items():
        calendar = calendars.of(owner)
        if calendar not in same:
            ahead = [
                Steps.starting(calendar, now, budget, policy.remind_share, grace)
                for _, budget in kinds
            ]
            same[calendar] = (
                ahead,
                [
                    _status_line(kind, step.due, budget, now, company, calendar.tz)
                    for (kind, budget), step in zip(kinds, ahead, strict=True)
                ],
            )
        starts[owner_id] = same[calendar]
    # Plain rows, not Clock objects: building thousands of those costs more than writing.
    queries.start_clocks(
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
                "next_at": step.next_after(ClockStage.running.value),
            }
            for lead_id, owner in handoffs
            for (kind, budget), step in zip(kinds, starts[owner.id or 0][0], strict=True)
        ],
    )
    return {lead_id: starts[owner.id or 0][1] for lead_id, owner in handoffs}


def _status_line(
    kind: ClockKind, due: datetime, budget: float, now: datetime, company: Company, tz: str
) -> str:
    """`status_lines`' line for a clock that starts now: all its business time is left."""
    what, at = text_for(f"clock_{kind.value}"), when(due, tz or company.tz)
    if now >= due:
        return text_for("clock_status_late", what=what, due=at)
    return text_for("clock_status_left", what=what, due=at, left=_duration(budget))


def on_accepted(session: Session, lead: Lead, now: datetime, company: Company) -> None:
    """Accepting ends the verdict clock and starts the attempts clock."""
    close(session, lead, [ClockKind.verdict], now, company)
    if lead.owner_id is None:
        return
    policy = queries.current_policy(session)
    owner = session.get(Member, lead.owner_id)
    if owner is None:
        return
    calendar = calendar_in(session, owner, company)
    day = calendar.day_seconds
    queries.start_clock(
        session,
        clock=_clock(
            lead, ClockKind.attempts, lead.owner_id, policy, policy.attempts_days * day, now
        ),
    )


def on_not_a_fit(session: Session, lead: Lead, now: datetime, company: Company) -> None:
    """A verdict of not a fit ends the verdict clock; the other sales clocks are cancelled."""
    close(session, lead, [ClockKind.verdict], now, company)
    for clock in queries.open_clocks(
        session, lead_id=lead.id or 0, kinds=[ClockKind.first_touch, ClockKind.attempts]
    ):
        _finish(session, clock, now, "cancelled")


def on_attempt(
    session: Session, lead: Lead, now: datetime, company: Company, outcome: str = ""
) -> None:
    """An attempt is a touch; enough of them meet the attempts commitment. A buyer's answer
    (a meeting, an opportunity, a win, a no) ends the follow-up before that: "ended"."""
    close(session, lead, [ClockKind.first_touch], now, company)
    policy = queries.current_policy(session)
    if lead.attempts >= policy.attempts:  # counted by `queries.record_attempt`
        close(session, lead, [ClockKind.attempts], now, company)
    elif outcome in queries.DECISIVE:
        for clock in queries.open_clocks(session, lead_id=lead.id or 0, kinds=[ClockKind.attempts]):
            _finish(session, clock, now, "ended")


def on_question(
    session: Session, lead: Lead, marketer_id: int, question_id: str, now: datetime
) -> None:
    """A rep's question starts the marketer's answer clock."""
    policy = queries.current_policy(session)
    queries.start_clock(
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
    for clock in queries.open_clocks(session, lead_id=lead.id or 0, kinds=kinds, ref=ref):
        owner = session.get(Member, clock.owner_id)
        if owner is None:
            _finish(session, clock, now, "cancelled")
            continue
        outcome, clock.business_seconds = closing(clock, calendar_in(session, owner, company), now)
        _finish(session, clock, now, outcome)


def closing(clock: ClockFacts, calendar: Calendar, now: datetime) -> tuple[str, float]:
    """How a clock closed at `now` ends, in its owner's `calendar`: met or missed, and the
    business time it ran (what the digest reports: median and 90th percentile)."""
    calendar = _with_snoozes(calendar, clock)
    due = add_business(calendar, clock.started_at, clock.budget_seconds)  # as `Steps.of`
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


# ---------------------------------------------------------------- the steps of a clock


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


def _with_snoozes(calendar: Calendar, clock: ClockFacts) -> Calendar:
    """A snoozed clock does not count its snoozes, as if its owner were away."""
    snoozed = tuple(
        (datetime.fromisoformat(entry[0]), datetime.fromisoformat(entry[1]))
        for entry in clock.snoozes
    )
    return replace(calendar, away=calendar.away + snoozed)


@dataclass(frozen=True)
class Steps:
    """When a clock reminds, breaches and escalates, in its owner's business time."""

    remind: datetime
    due: datetime
    escalate: datetime

    @classmethod
    def of(cls, clock: ClockFacts, calendar: Calendar) -> Steps:
        return cls.starting(
            _with_snoozes(calendar, clock),
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


@dataclass
class TickReport:
    looked_at: int = 0
    messages: int = 0
    keys: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """What the steps of one batch of due clocks read — leads (with the attempts made),
    owners and their managers, their time away — with one query each, and the messages
    they owe."""

    leads: dict[int, Lead]
    members: dict[int, Member]
    calendars: Calendars
    attempts_wanted: int
    owed: list[NewMessage] = field(default_factory=list)

    @classmethod
    def load(cls, session: Session, clocks: list[Clock], company: Company) -> Batch:
        leads = queries.leads_by_id(session, ids={clock.lead_id for clock in clocks})
        members = queries.members_by_id(session, ids={clock.owner_id for clock in clocks})
        managers = {m.manager_id for m in members.values() if m.manager_id} - members.keys()
        members.update(queries.members_by_id(session, ids=managers))
        away = queries.away_spans_of(session, member_ids=members.keys())
        following_up = any(clock.kind == ClockKind.attempts for clock in clocks)
        wanted = queries.current_policy(session).attempts if following_up else 0
        return cls(leads, members, Calendars(session, company, away=away), wanted)


def advance(clock: Clock, now: datetime, batch: Batch) -> ClockChange:
    """Take every step of `clock` that is due at `now`; where that leaves it, with its next
    look scheduled."""
    owner = batch.members.get(clock.owner_id)
    lead = batch.leads.get(clock.lead_id)
    if owner is None or lead is None:
        return ClockChange(clock.id or 0, clock.stage, None, closed_at=now, outcome="cancelled")
    try:
        steps = Steps.of(clock, batch.calendars.of(owner))
    except ValueError:  # a calendar without any working time in the next three years
        log.warning("clock %s: %s has no working hours; looking again tomorrow", clock.id, owner.id)
        return ClockChange(clock.id or 0, clock.stage, now + timedelta(days=1))
    notes = Notes(clock, lead, owner, steps, batch, now)
    stage = clock.stage
    if stage < ClockStage.reminded and now >= steps.remind and now < steps.due:
        notes.to_owner("reminder")
        stage = ClockStage.reminded.value
    if stage < ClockStage.breached and now >= steps.due:
        notes.to_owner("breach")
        stage = ClockStage.breached.value
    if stage < ClockStage.escalated and now >= steps.escalate:
        notes.to_manager()
        stage = ClockStage.escalated.value
        if clock.kind == ClockKind.attempts:
            # The follow-up window is over without the attempts: missed, as of its end.
            return ClockChange(
                clock.id or 0,
                stage,
                None,
                closed_at=steps.due,
                outcome="missed",
                business_seconds=clock.budget_seconds,
            )
    return ClockChange(clock.id or 0, stage, steps.next_after(stage))


def tick(store: Store, *, now: datetime, company: Company, batch: int = 500) -> TickReport:
    """One scheduler pass over the due clocks, a batch per transaction.

    A batch's rows are read together, its clocks written with one UPDATE and its messages
    with one INSERT, so the statements per batch do not grow with its due clocks."""
    report = TickReport()
    while True:
        with store.session() as session:
            if not queries.any_due_clock(session, now=now):
                return report
            clocks = queries.due_clocks(session, now=now, limit=batch)
            due = Batch.load(session, clocks, company)
            queries.update_clocks(session, changes=[advance(c, now, due) for c in clocks])
            keys = queries.enqueue_many(session, messages=due.owed)
            report.looked_at += len(clocks)
            report.messages += len(keys)
            report.keys.extend(keys)
        if len(clocks) < batch:
            return report


# ---------------------------------------------------------------- what the clock says


@dataclass
class Notes:
    """The private messages of one clock step, owed to the outbox with the batch's."""

    clock: Clock
    lead: Lead
    owner: Member
    steps: Steps
    batch: Batch
    now: datetime

    def _what(self) -> str:
        return text_for(f"clock_{self.clock.kind}")

    def to_owner(self, step: str) -> None:
        tz = self.owner.timezone or self.batch.calendars.company.tz
        card = Card(
            title=text_for(f"clock_{step}_title", what=self._what(), lead=self.lead.name),
            text=text_for(
                f"clock_{step}_text",
                what=self._what(),
                lead=self.lead.name,
                due=when(self.steps.due, tz),
                progress=self._progress(),
            ),
            fields=(Field_(text_for("label_company"), self.lead.company),)
            if self.lead.company
            else (),
            context=text_for("lead_context_short", lead_id=self.lead.id),
            buttons=(Button(text_for("button_snooze"), "clock.snooze", f"clock={self.clock.id}"),),
        )
        self._send(self.owner, step, card)

    def to_manager(self) -> None:
        manager = self.batch.members.get(self.owner.manager_id) if self.owner.manager_id else None
        if manager is None:
            log.info("clock %s escalates, but %s has no manager", self.clock.id, self.owner.id)
            return
        tz = manager.timezone or self.batch.calendars.company.tz
        card = Card(
            title=text_for("clock_escalation_title", who=self.owner.name, what=self._what()),
            text=text_for(
                "clock_escalation_text",
                who=self.owner.name,
                what=self._what(),
                lead=self.lead.name,
                due=when(self.steps.due, tz),
                progress=self._progress(),
            ),
            context=text_for("clock_escalation_context", lead_id=self.lead.id),
        )
        self._send(manager, "escalation", card)

    def _progress(self) -> str:
        if self.clock.kind != ClockKind.attempts:
            return ""
        return text_for(
            "clock_attempts_progress", done=self.lead.attempts, wanted=self.batch.attempts_wanted
        )

    def _send(self, member: Member, step: str, card: Card) -> None:
        """Owed now, delivered in the recipient's working hours (never at night)."""
        calendar = self.batch.calendars.of(member)
        self.batch.owed.append(
            NewMessage(
                key=f"clock:{self.clock.id}:{step}",
                member_id=member.id,
                card=card_to_dict(card),
                lead_id=self.lead.id,
                not_before=next_working_moment(calendar, self.now),
                created_at=self.now,
            )
        )


# ---------------------------------------------------------------- what a card shows


def status_lines(
    session: Session,
    lead: Lead,
    now: datetime,
    company: Company,
    owner_id: int | None = None,
) -> list[str]:
    """One line per open clock of the lead (only `owner_id`'s, if given): what is due when,
    and the business time left."""
    clocks = queries.open_clocks(session, lead_id=lead.id or 0, kinds=list(ClockKind), lock=False)
    if owner_id is not None:
        clocks = [clock for clock in clocks if clock.owner_id == owner_id]

    def owner_of(member_id: int) -> tuple[str | None, Calendar] | None:
        owner = session.get(Member, member_id)
        if owner is None:
            return None
        return owner.timezone, calendar_in(session, owner, company)

    return lines_of(clocks, owner_of, now, company)


def clock_lines(
    clocks: Sequence[ClockFacts],
    owners: Mapping[int, Member | None],
    calendars: Mapping[int, Calendar],
    now: datetime,
    company: Company,
) -> list[str]:
    """`status_lines` of these open clocks, from their owners and calendars as read (no SQL);
    a clock whose owner is gone shows nothing."""

    def owner_of(member_id: int) -> tuple[str | None, Calendar] | None:
        owner = owners.get(member_id)
        return None if owner is None else (owner.timezone, calendars[member_id])

    return lines_of(clocks, owner_of, now, company)


def lines_of(
    clocks: Sequence[ClockFacts],
    owner_of: Callable[[int], tuple[str | None, Calendar] | None],
    now: datetime,
    company: Company,
) -> list[str]:
    """`status_lines` of these open clocks (by id); `owner_of` gives each owner's time zone
    and calendar (None: the owner is gone, and the clock is not shown)."""
    lines = []
    for clock in clocks:
        found = owner_of(clock.owner_id)
        if found is None:
            continue
        tz, calendar = found
        calendar = _with_snoozes(calendar, clock)
        deadline = add_business(calendar, clock.started_at, clock.budget_seconds)  # `Steps.of`
        due = when(deadline, tz or company.tz)
        what = text_for(f"clock_{clock.kind}")
        if now >= deadline:
            lines.append(text_for("clock_status_late", what=what, due=due))
        else:
            left = business_seconds(calendar, now, deadline)
            lines.append(text_for("clock_status_left", what=what, due=due, left=_duration(left)))
    return lines


def _duration(seconds: float) -> str:
    hours, minutes = divmod(int(seconds // 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def snooze(
    session: Session, clock: Clock, *, until: datetime, reason: str, by: Member, now: datetime
) -> None:
    """Pause a clock until `until`, recorded with its reason; the next tick re-plans it."""
    clock.snoozes = [*clock.snoozes, [now.isoformat(), until.isoformat(), reason]]
    clock.next_at = now
    session.add(clock)
    queries.add_event(
        session,
        lead_id=clock.lead_id,
        kind=EventKind.clock_snoozed,
        now=now,
        member_id=by.id,
        data={"clock": clock.kind, "until": until.isoformat(), "reason": reason},
    )
