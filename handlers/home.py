"""The home view: what waits for me, across every capability, with SLA time left.

Slack shows it on the App Home tab (published whenever the tab is opened); Teams and the
console show it as a private card on `home`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.effects import Effect, Reply
from bot.interaction import Interaction
from bot.messages import Button, Card, Field_
from bot.router import Context, Router
from bot.text import say
from digests import sla
from handlers.leads import my_leads
from storage import queries
from storage.models import ClockKind, Lead, Member

SHOWN = 8  # items per section; the rest are counted


@dataclass(frozen=True)
class Section:
    """One part of the home view: its items, each a line, and how many there are."""

    label: str
    lines: list[str]
    total: int
    count: str = ""  # "3 leads", for the summary line


def register(router: Router) -> None:
    router.command("home", show_home, summary=say("help_home"))
    router.action("home.leads", my_leads)
    router.action("home.refresh", show_home)


def _mine(ctx: Context, lead: Lead, me: Member) -> str:
    """The lead's SLA clocks that I owe, with their business time left."""
    lines = sla.status_lines(ctx.session, lead, ctx.now, ctx.company, owner_id=me.id)
    return "; ".join(lines)


def leads_section(ctx: Context, me: Member) -> Section:
    leads = queries.open_leads_of(ctx.session, member_id=me.id or 0)
    lines = []
    for lead in leads[:SHOWN]:
        state = say("home_state_waiting" if lead.state == "handed_off" else "home_state_accepted")
        lines.append(
            say("home_lead", lead=lead.name, company=lead.company or "", state=state)
            + (f" · {clocks}" if (clocks := _mine(ctx, lead, me)) else "")
        )
    return Section(say("home_leads"), lines, len(leads), say("home_count_leads", n=len(leads)))


def questions_section(ctx: Context, me: Member) -> Section:
    """Reps' questions about leads that wait for my answer (marketers)."""
    clocks = queries.open_clocks_of(ctx.session, owner_id=me.id or 0, kind=ClockKind.info_answer)
    lines = []
    for clock in clocks[:SHOWN]:
        lead = ctx.session.get(Lead, clock.lead_id)
        if lead is not None:
            lines.append(say("home_question", lead=lead.name, clocks=_mine(ctx, lead, me)))
    count = say("home_count_questions", n=len(clocks))
    return Section(say("home_questions"), lines, len(clocks), count)


SECTIONS: tuple[Callable[[Context, Member], Section], ...] = (leads_section, questions_section)


def home_card(ctx: Context, me: Member) -> Card:
    """Every section with something in it; a calm note when nothing waits."""
    sections = [section(ctx, me) for section in SECTIONS]
    fields: list[Field_] = []
    for section in sections:
        for line in section.lines:
            fields.append(Field_(section.label, line))
        if section.total > len(section.lines):
            fields.append(Field_(section.label, say("home_more", count=section.total - SHOWN)))
    waiting = [s for s in sections if s.total]
    return Card(
        title=say("home_title", name=me.name),
        text=say("home_summary", parts=[s.count for s in waiting]),
        fields=tuple(fields),
        context=say("home_context", platform=""),
        buttons=(
            Button(say("home_button_leads"), "home.leads"),
            Button(say("home_button_refresh"), "home.refresh"),
        ),
    )


def show_home(ctx: Context, interaction: Interaction) -> list[Effect]:
    return [Reply(home_card(ctx, interaction.actor))]
