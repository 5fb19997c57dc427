"""Snoozing an SLA clock, with a reason, from a reminder card."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.business_time import next_working_moment
from bot.core.effects import Effect, FormErrors, ShowForm
from bot.core.interaction import Interaction
from bot.core.messages import Form, Input, InputKind, Option
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from digests import sla
from handlers.common import nonce, private
from storage.calendars import calendar_of
from storage.models import Clock, Lead

MAX_SNOOZE = timedelta(days=7)


def register(router: Router) -> None:
    router.action("clock.snooze", open_snooze)
    router.form("clock.snooze", submit_snooze)


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
    sla.snooze(ctx.session, clock, until=until, reason=reason, by=me, now=ctx.now)
    what = text_for(f"clock_{clock.kind}")
    return private(text_for("snooze_done", what=what, until=when(until, calendar.tz)))
