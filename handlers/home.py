"""The home view: what waits for me, across every capability, with SLA time left.

Slack shows it on the App Home tab (published whenever the tab is opened); Teams and the
console show it as a private card on `home`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.core.effects import Effect, Reply
from bot.core.interaction import Interaction, Person
from bot.core.messages import Button, Card, Fact
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers.cards import member_name
from handlers.clocks import status_lines
from handlers.leads import my_leads
from storage import approvals as approval_store
from storage import clocks as clock_store
from storage import feedback as feedback_store
from storage import insights as insight_store
from storage import leads as stored_leads
from storage.models import ClockKind, Lead, Role

SHOWN = 8  # items per section; the rest are counted
BUTTONS = 4  # buttons for the first items that wait, across sections


@dataclass(frozen=True)
class Section:
    """One part of the home view: its items, each a line, how many there are, and buttons
    that act on the first of them."""

    label: str
    lines: list[str]
    total: int
    count: str = ""  # "3 leads", for the summary line
    buttons: tuple[Button, ...] = ()


def register(router: Router) -> None:
    router.command("home", show_home, summary=text_for("help_home"))
    router.action("home.leads", my_leads)
    router.action("home.refresh", show_home)


def _mine(ctx: Context, lead: Lead, me: Person) -> str:
    """The lead's SLA clocks that I owe, with their business time left."""
    lines = status_lines(ctx.session, lead, ctx.now, ctx.company, owner_id=me.id)
    return "; ".join(lines)


def leads_section(ctx: Context, me: Person) -> Section:
    """Leads that wait for my verdict, or whose follow-up is mine to run."""
    leads = stored_leads.open_leads_of(ctx.session, member_id=me.id or 0, limit=SHOWN)
    total = stored_leads.count_open_leads(ctx.session, member_id=me.id or 0)
    lines = []
    for lead in leads:
        state = text_for(
            "home_state_waiting" if lead.state == "handed_off" else "home_state_accepted"
        )
        lines.append(
            text_for("home_lead", lead=lead.name, company=lead.company or "", state=state)
            + (f" · {clocks}" if (clocks := _mine(ctx, lead, me)) else "")
        )
    return Section(text_for("home_leads"), lines, total, text_for("home_count_leads", n=total))


def questions_section(ctx: Context, me: Person) -> Section:
    """Reps' questions about leads that wait for my answer (marketers)."""
    clocks = clock_store.open_clocks_of(
        ctx.session, owner_id=me.id or 0, kind=ClockKind.info_answer
    )
    lines = []
    for clock in clocks[:SHOWN]:
        lead = ctx.session.get(Lead, clock.lead_id)
        if lead is not None:
            lines.append(text_for("home_question", lead=lead.name, clocks=_mine(ctx, lead, me)))
    count = text_for("home_count_questions", n=len(clocks))
    return Section(text_for("home_questions"), lines, len(clocks), count)


def feedback_section(ctx: Context, me: Person) -> Section:
    """Feedback requests that wait for my answer (they block nothing)."""
    waiting = feedback_store.waiting_for(ctx.session, member_id=me.id or 0, now=ctx.now)
    tz = me.timezone or ctx.company.tz
    lines = [
        text_for(
            "home_feedback",
            subject=w.subject,
            who=member_name(ctx.session, w.requester_id),
            answered=w.answered,
            questions=w.questions,
            deadline=when(w.deadline, tz),
        )
        for w in waiting[:SHOWN]
    ]
    buttons = tuple(
        Button(
            text_for("home_button_feedback", id=w.request_id),
            "feedback.answer",
            f"request={w.request_id}",
        )
        for w in waiting[:BUTTONS]
    )
    count = text_for("home_count_feedback", n=len(waiting))
    return Section(text_for("home_feedback_label"), lines, len(waiting), count, buttons)


def approvals_section(ctx: Context, me: Person) -> Section:
    """Sign-offs that wait for me (these block a new version until I decide)."""
    waiting = approval_store.waiting_for(ctx.session, member_id=me.id or 0)
    tz = me.timezone or ctx.company.tz
    lines = [
        text_for(
            "home_approval",
            id=r.id,
            subject=r.subject,
            who=member_name(ctx.session, r.proposed_by),
            at=when(r.created_at, tz),
        )
        for r in waiting[:SHOWN]
    ]
    buttons = tuple(
        Button(text_for("home_button_approval", id=r.id), "approval.approve", f"request={r.id}")
        for r in waiting[:BUTTONS]
    )
    count = text_for("home_count_approvals", n=len(waiting))
    return Section(text_for("home_approvals_label"), lines, len(waiting), count, buttons)


def insights_section(ctx: Context, me: Person) -> Section:
    """Insights I raised that marketing has not answered yet; for marketing, those nobody
    has claimed and those I claimed."""
    if me.role in (Role.marketer, Role.admin):
        open_ = list(insight_store.waiting_for_marketing(ctx.session, member_id=me.id or 0))
    else:
        open_ = list(insight_store.open_of(ctx.session, member_id=me.id or 0))
    lines = [
        text_for(
            "home_insight",
            text=i.text,
            mine=i.author_id == me.id,
            status=i.status,
            who=member_name(ctx.session, i.marketer_id, ""),
        )
        for i in open_[:SHOWN]
    ]
    buttons = tuple(
        Button(text_for("home_button_insight", id=i.id), "insight.answer", f"insight_id={i.id}")
        for i in open_[:BUTTONS]
        if i.author_id != me.id
    )
    count = text_for("home_count_insights", n=len(open_))
    return Section(text_for("home_insights_label"), lines, len(open_), count, buttons)


SECTIONS: tuple[Callable[[Context, Person], Section], ...] = (
    leads_section,
    questions_section,
    feedback_section,
    approvals_section,
    insights_section,
)


def home_card(ctx: Context, me: Person) -> Card:
    """Every section with something in it; a calm note when nothing waits."""
    sections = [section(ctx, me) for section in SECTIONS]
    fields: list[Fact] = []
    for section in sections:
        for line in section.lines:
            fields.append(Fact(section.label, line))
        if section.total > len(section.lines):
            more = section.total - len(section.lines)
            fields.append(Fact(section.label, text_for("home_more", count=more)))
    waiting = [s for s in sections if s.total]
    return Card(
        title=text_for("home_title", name=me.name),
        text=text_for("home_summary", parts=[s.count for s in waiting]),
        fields=tuple(fields),
        context=text_for("home_context", platform=""),
        buttons=(
            *[b for section in sections for b in section.buttons][:BUTTONS],
            Button(text_for("home_button_leads"), "home.leads"),
            Button(text_for("home_button_refresh"), "home.refresh"),
        ),
    )


def show_home(ctx: Context, interaction: Interaction) -> list[Effect]:
    return [Reply(home_card(ctx, interaction.actor))]
