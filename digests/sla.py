"""SLA clocks: started and closed by what happens to a lead, advanced by the scheduler tick.

A clock is a row. The tick claims the clocks whose next step is due, decides with `now`
passed in (reminder at a share of the window, breach at the deadline, escalation to the
manager after the grace period), and writes the private messages to the outbox in the
same transaction, so a step is taken — and its message owed — exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.messages import Button, Card, Field_, card_to_dict
from bot.text import say, when
from digests.business_time import (
    Calendar,
    Company,
    add_business,
    business_seconds,
    next_working_moment,
)
from digests.calendars import Calendars, calendar_in
from storage import queries
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
    return Clock(
        lead_id=lead.id or 0,
        kind=kind.value,
        ref=ref,
        owner_id=owner_id,
        policy_version=policy.version,
        started_at=now,
        budget_seconds=budget,
        remind_share=policy.remind_share,
        grace_seconds=policy.escalate_after_hours * HOUR,
        next_at=now,
    )


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
    session: Session, handoffs: Sequence[tuple[int, Member]], now: datetime, company: Company
) -> dict[int, list[str]]:
    """Leads reached their owners (`(lead id, owner)` each): their first-touch and verdict
    clocks start, written in one statement (`on_handoff`, in bulk). Returns each lead's
    clock lines as `status_lines` shows them now, worked out once per owner: clocks that
    start together in one owner's business time end together."""
    if not handoffs:
        return {}
    policy = queries.current_policy(session)
    kinds = (
        (ClockKind.first_touch, policy.first_touch_hours * HOUR),
        (ClockKind.verdict, policy.verdict_hours * HOUR),
    )
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
                "grace_seconds": policy.escalate_after_hours * HOUR,
                "stage": ClockStage.running.value,
                "snoozes": [],
                "next_at": now,
            }
            for lead_id, owner in handoffs
            for kind, budget in kinds
        ],
    )
    owners = {owner.id or 0: owner for _, owner in handoffs}
    calendars = Calendars(session, company, queries.away_spans_of(session, member_ids=owners))
    # Owners on the same calendar (most of a team) share their lines: worked out once.
    same: dict[Calendar, list[str]] = {}
    lines: dict[int, list[str]] = {}
    for owner_id, owner in owners.items():
        calendar = calendars.of(owner)
        if calendar not in same:
            same[calendar] = [
                _status_line(
                    kind, add_business(calendar, now, budget), budget, now, company, calendar.tz
                )
                for kind, budget in kinds
            ]
        lines[owner_id] = same[calendar]
    return {lead_id: lines[owner.id or 0] for lead_id, owner in handoffs}


def _status_line(
    kind: ClockKind, due: datetime, budget: float, now: datetime, company: Company, tz: str
) -> str:
    """`status_lines`' line for a clock that starts now: all its business time is left."""
    what, at = say(f"clock_{kind.value}"), when(due, tz or company.tz)
    if now >= due:
        return say("clock_status_late", what=what, due=at)
    return say("clock_status_left", what=what, due=at, left=_duration(budget))


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
    day = _day_seconds(calendar)
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
        calendar = calendar_in(session, owner, company)
        steps = Steps.of(clock, calendar)
        _finish(session, clock, now, "met" if now <= steps.due else "missed")
        # What the digest reports (median and 90th percentile), in the owner's business time.
        clock.business_seconds = business_seconds(
            _with_snoozes(calendar, clock), clock.started_at, now
        )


def _finish(session: Session, clock: Clock, now: datetime, outcome: str) -> None:
    clock.closed_at, clock.outcome, clock.next_at = now, outcome, None
    session.add(clock)


def _day_seconds(calendar: Calendar) -> float:
    start = timedelta(hours=calendar.start.hour, minutes=calendar.start.minute)
    end = timedelta(hours=calendar.end.hour, minutes=calendar.end.minute)
    return (end - start).total_seconds()


# ---------------------------------------------------------------- the steps of a clock


def _with_snoozes(calendar: Calendar, clock: Clock) -> Calendar:
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
    def of(cls, clock: Clock, calendar: Calendar) -> Steps:
        calendar = _with_snoozes(calendar, clock)
        start, budget = clock.started_at, clock.budget_seconds
        due = add_business(calendar, start, budget)
        return cls(
            remind=add_business(calendar, start, budget * clock.remind_share),
            due=due,
            escalate=add_business(calendar, due, clock.grace_seconds),
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
        return say(f"clock_{self.clock.kind}")

    def to_owner(self, step: str) -> None:
        tz = self.owner.timezone or self.batch.calendars.company.tz
        card = Card(
            title=say(f"clock_{step}_title", what=self._what(), lead=self.lead.name),
            text=say(
                f"clock_{step}_text",
                what=self._what(),
                lead=self.lead.name,
                due=when(self.steps.due, tz),
                progress=self._progress(),
            ),
            fields=(Field_(say("label_company"), self.lead.company),) if self.lead.company else (),
            context=say("lead_context_short", lead_id=self.lead.id),
            buttons=(Button(say("button_snooze"), "clock.snooze", f"clock={self.clock.id}"),),
        )
        self._send(self.owner, step, card)

    def to_manager(self) -> None:
        manager = self.batch.members.get(self.owner.manager_id) if self.owner.manager_id else None
        if manager is None:
            log.info("clock %s escalates, but %s has no manager", self.clock.id, self.owner.id)
            return
        tz = manager.timezone or self.batch.calendars.company.tz
        card = Card(
            title=say("clock_escalation_title", who=self.owner.name, what=self._what()),
            text=say(
                "clock_escalation_text",
                who=self.owner.name,
                what=self._what(),
                lead=self.lead.name,
                due=when(self.steps.due, tz),
                progress=self._progress(),
            ),
            context=say("clock_escalation_context", lead_id=self.lead.id),
        )
        self._send(manager, "escalation", card)

    def _progress(self) -> str:
        if self.clock.kind != ClockKind.attempts:
            return ""
        return say(
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
    clocks = [
        clock
        for clock in queries.open_clocks(
            session, lead_id=lead.id or 0, kinds=list(ClockKind), lock=False
        )
        if owner_id is None or clock.owner_id == owner_id
    ]
    owners = {clock.owner_id: session.get(Member, clock.owner_id) for clock in clocks}
    calendars = {
        owner_id: calendar_in(session, owner, company)
        for owner_id, owner in owners.items()
        if owner is not None
    }
    return clock_lines(clocks, owners, calendars, now, company)


def clock_lines(
    clocks: Sequence[Clock],
    owners: Mapping[int, Member | None],
    calendars: Mapping[int, Calendar],
    now: datetime,
    company: Company,
) -> list[str]:
    """`status_lines` of these open clocks, from their owners and calendars as read (no SQL);
    a clock whose owner is gone shows nothing."""
    lines = []
    for clock in clocks:
        owner = owners.get(clock.owner_id)
        if owner is None:
            continue
        calendar = calendars[clock.owner_id]
        steps = Steps.of(clock, calendar)
        due = when(steps.due, owner.timezone or company.tz)
        what = say(f"clock_{clock.kind}")
        if now >= steps.due:
            lines.append(say("clock_status_late", what=what, due=due))
        else:
            left = business_seconds(_with_snoozes(calendar, clock), now, steps.due)
            lines.append(say("clock_status_left", what=what, due=due, left=_duration(left)))
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
