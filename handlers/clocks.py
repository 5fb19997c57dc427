"""SLA clocks as people see them: the lines a lead's card shows of its open clocks (worked
out at handoff for the clocks it starts), and snoozing a clock, with a reason, from a
reminder card; and `TickReport`, what a pass of due work did (the SLA tick's, the other
scheduled passes', and ingest's retry of owner lookups). The clocks' rows are
storage/clocks.py's; their steps, digests/sla.py's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from bot.core.business_time import (
    Calendar,
    Company,
    Span,
    add_business,
    business_seconds,
    next_working_moment,
)
from bot.core.effects import Effect, FormErrors, ShowForm
from bot.core.interaction import Interaction
from bot.core.messages import Form, Input, InputKind, Option
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers.common import nonce, private
from storage import clocks as clock_store
from storage.calendars import calendar_in, calendar_of
from storage.clocks import ClockFacts, with_snoozes
from storage.models import Clock, ClockKind, Lead, Member

MAX_SNOOZE = timedelta(days=7)


@dataclass
class TickReport:
    """What one pass over due work did (the SLA clocks', and the scheduler's other passes):
    rows looked at, messages owed to the outbox and their keys."""

    looked_at: int = 0
    messages: int = 0
    keys: list[str] = field(default_factory=list)


def register(router: Router) -> None:
    router.action("clock.snooze", open_snooze)
    router.form("clock.snooze", submit_snooze)


# ---------------------------------------------------------------- what a card shows


def on_handoffs(
    session: Session,
    handoffs: Sequence[tuple[int, Member]],
    now: datetime,
    company: Company,
    away: Mapping[int, Sequence[Span]] | None = None,
) -> dict[int, list[str]]:
    """Leads reached their owners (`(lead id, owner)` each): their first-touch and verdict
    clocks start (`clock_store.on_handoffs`). Returns each lead's clock lines as
    `status_lines` shows them now, worked out once per calendar. `away`: the owners' time
    away, when the caller read it already."""
    started = clock_store.on_handoffs(session, handoffs, now, company, away)
    same: dict[Calendar, list[str]] = {}
    for owned in started.values():
        if owned.calendar not in same:
            tz = owned.calendar.tz
            same[owned.calendar] = [
                _status_line(kind, steps.due, budget, now, company, tz)
                for kind, budget, steps in owned.clocks
            ]
    return {lead_id: same[started[owner.id or 0].calendar] for lead_id, owner in handoffs}


def _status_line(
    kind: ClockKind, due: datetime, budget: float, now: datetime, company: Company, tz: str
) -> str:
    """`status_lines`' line for a clock that starts now: all its business time is left."""
    what, at = text_for(f"clock_{kind.value}"), when(due, tz or company.tz)
    if now >= due:
        return text_for("clock_status_late", what=what, due=at)
    return text_for("clock_status_left", what=what, due=at, left=_duration(budget))


def status_lines(
    session: Session,
    lead: Lead,
    now: datetime,
    company: Company,
    owner_id: int | None = None,
) -> list[str]:
    """One line per open clock of the lead (only `owner_id`'s, if given): what is due when,
    and the business time left."""
    clocks = clock_store.open_clocks(
        session, lead_id=lead.id or 0, kinds=list(ClockKind), lock=False
    )
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
        calendar = with_snoozes(calendar, clock)
        deadline = add_business(calendar, clock.started_at, clock.budget_seconds)  # `sla.Steps.of`
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


# ---------------------------------------------------------------- snoozing


def _clock(ctx: Context, interaction: Interaction) -> Clock | list[Effect]:
    raw = interaction.arg("clock")
    clock = ctx.session.get(Clock, int(raw)) if raw.isdigit() else None
    if clock is None or clock.closed_at is not None:
        return private(text_for("snooze_closed"))
    if clock.owner_id != interaction.actor.id:
        return private(text_for("snooze_not_yours"))
    return clock


def open_snooze(ctx: Context, interaction: Interaction) -> list[Effect]:
    clock = _clock(ctx, interaction)
    if isinstance(clock, list):
        return clock
    lead = ctx.session.get(Lead, clock.lead_id)
    form = Form(
        name="clock.snooze",
        title=text_for("snooze_form_title"),
        intro=text_for(
            "snooze_form_intro",
            what=text_for(f"clock_{clock.kind}"),
            lead=lead.name if lead else "?",
        ),
        inputs=(
            Input(
                "for",
                text_for("snooze_for_label"),
                InputKind.select,
                (
                    Option("1h", text_for("snooze_1h")),
                    Option("tomorrow", text_for("snooze_tomorrow")),
                    Option("custom", text_for("snooze_custom")),
                ),
            ),
            Input(
                "until",
                text_for("snooze_until_label"),
                InputKind.text,
                required=False,
                max_length=16,
                placeholder="2026-12-01 09:00",
            ),
            Input("reason", text_for("snooze_reason_label"), InputKind.text, max_length=300),
        ),
        submit_label=text_for("button_submit"),
        state={"clock": str(clock.id), "nonce": nonce()},
    )
    return [ShowForm(form)]


def _until(ctx: Context, interaction: Interaction, tz: str) -> datetime | str:
    """The end of the snooze, or the name of the template that explains the mistake."""
    zone = ZoneInfo(tz)
    choice = interaction.value("for")
    if choice == "1h":
        return ctx.now + timedelta(hours=1)
    if choice == "tomorrow":
        local = ctx.now.astimezone(zone)
        return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    try:
        until = datetime.fromisoformat(interaction.value("until").replace(" ", "T"))
    except ValueError:
        return "snooze_until_needed"
    return until if until.tzinfo else until.replace(tzinfo=zone)


def submit_snooze(ctx: Context, interaction: Interaction) -> list[Effect]:
    clock = _clock(ctx, interaction)
    if isinstance(clock, list):
        return clock
    reason = interaction.value("reason")
    if not reason:
        return [FormErrors({"reason": text_for("snooze_reason_needed")})]
    me = interaction.actor
    calendar = calendar_of(ctx.session, me, ctx.company)
    until = _until(ctx, interaction, calendar.tz)
    if isinstance(until, str):
        return [FormErrors({"until": text_for(until)})]
    if interaction.value("for") == "tomorrow":
        until = next_working_moment(calendar, until)
    if until <= ctx.now:
        return [FormErrors({"until": text_for("snooze_until_past")})]
    if until - ctx.now > MAX_SNOOZE:
        return [FormErrors({"until": text_for("snooze_too_long")})]
    clock_store.snooze(ctx.session, clock, until=until, reason=reason, by=me, now=ctx.now)
    what = text_for(f"clock_{clock.kind}")
    return private(text_for("snooze_done", what=what, until=when(until, calendar.tz)))
