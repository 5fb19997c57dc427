"""SLA clocks advanced by the scheduler tick (their rows start and close as a lead moves:
storage/clocks.py).

A clock is a row. The tick claims the clocks whose next step is due, decides with `now`
passed in (reminder at a share of the window, breach at the deadline, escalation to the
manager after the grace period), and writes the private messages to the outbox in the
same transaction, so a step is taken — and its message owed — exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.core.business_time import Company, next_working_moment
from bot.core.messages import Button, Card, Fact, card_to_dict
from bot.core.text import text_for, when
from handlers.clocks import TickReport
from storage import away as stored_away
from storage import clocks as clock_store
from storage import leads as stored_leads
from storage import members as stored_members
from storage import outbox as stored_outbox
from storage import policies
from storage.calendars import Calendars
from storage.clocks import Steps
from storage.db import Store
from storage.models import Clock, ClockChange, ClockKind, ClockStage, Lead, Member
from storage.values import NewMessage

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the steps of a clock


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
        leads = stored_leads.leads_by_id(session, ids={clock.lead_id for clock in clocks})
        members = stored_members.members_by_id(session, ids={clock.owner_id for clock in clocks})
        managers = {m.manager_id for m in members.values() if m.manager_id} - members.keys()
        members.update(stored_members.members_by_id(session, ids=managers))
        away = stored_away.away_spans_of(session, member_ids=members.keys())
        following_up = any(clock.kind == ClockKind.attempts for clock in clocks)
        wanted = policies.current_policy(session).attempts if following_up else 0
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
            if not clock_store.any_due_clock(session, now=now):
                return report
            clocks = clock_store.due_clocks(session, now=now, limit=batch)
            due = Batch.load(session, clocks, company)
            clock_store.update_clocks(session, changes=[advance(c, now, due) for c in clocks])
            keys = stored_outbox.enqueue_many(session, messages=due.owed)
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
            fields=(Fact(text_for("label_company"), self.lead.company),)
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
