"""The digest in words: the neutral `Report` every platform renders its own way, and the
text, Markdown and HTML documents (Jinja2 templates) for the console and email."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from bot.core.messages import Fact, Report, Section
from bot.core.text import TEMPLATES, text_for
from digests.digest import CONVERSION_WEEKS, SHOWN_CAMPAIGNS, SHOWN_REJECTIONS, Digest

SHOWN_WINS = 6

T = TypeVar("T")
SectionMaker = Callable[[Digest], Section | None]


def _capped(items: Sequence[T], shown: int, line: Callable[[T], str]) -> tuple[str, ...]:
    lines = [line(item) for item in items[:shown]]
    if len(items) > shown:
        lines.append(text_for("digest_more", count=len(items) - shown))
    return tuple(lines) or (text_for("digest_none"),)


def funnel_section(d: Digest) -> Section:
    f = d.funnel
    change = text_for("digest_vs", now=f.generated, before=d.previous.leads)
    return Section(
        text_for("digest_funnel_heading"),
        facts=(
            Fact(text_for("digest_generated"), f"{f.generated} {change}".strip()),
            Fact(text_for("digest_handed_off"), str(f.handed_off)),
            Fact(text_for("digest_accepted"), str(f.accepted)),
            Fact(text_for("digest_not_a_fit"), str(f.not_a_fit)),
            Fact(text_for("digest_waiting"), str(f.waiting)),
            Fact(text_for("digest_first_touches"), str(f.first_touched)),
            Fact(text_for("digest_attempts"), text_for("digest_attempts_value", f=f)),
            Fact(text_for("digest_outcomes"), text_for("digest_outcomes_value", o=f.outcomes)),
        ),
    )


def marketing_section(d: Digest) -> Section:
    m = d.marketing
    return Section(
        text_for("digest_marketing_heading"),
        facts=(
            Fact(
                text_for("digest_leads_target"),
                text_for("digest_leads_target_value", t=m.leads, before=d.previous.leads),
            ),
            Fact(
                text_for("digest_acceptance"),
                text_for(
                    "digest_acceptance_value",
                    t=m.acceptance_rate,
                    before=d.previous.acceptance_rate,
                ),
            ),
            Fact(text_for("digest_info"), text_for("digest_info_value", m=m)),
        ),
    )


def campaigns_section(d: Digest) -> Section:
    lines = _capped(
        d.marketing.campaigns, SHOWN_CAMPAIGNS, lambda c: text_for("digest_campaign_line", c=c)
    )
    return Section(text_for("digest_campaigns_heading"), lines=lines)


def rejections_section(d: Digest) -> Section:
    def line(r: Any) -> str:
        return text_for("digest_rejection_line", r=r)

    by_campaign = _capped(d.marketing.rejections_by_campaign, SHOWN_REJECTIONS, line)
    by_version = _capped(d.marketing.rejections_by_version, SHOWN_REJECTIONS, line)
    return Section(
        text_for("digest_rejections_campaign_heading"),
        lines=(
            *by_campaign,
            text_for("digest_rejections_version_heading") + ":",
            *by_version,
        ),
    )


def sales_section(d: Digest) -> Section:
    s = d.sales
    return Section(
        text_for("digest_sales_heading"),
        facts=(
            Fact(text_for("digest_first_touch"), text_for("digest_first_touch_value", s=s)),
            Fact(
                text_for("digest_first_touch_in_time", s=s),
                text_for(
                    "digest_share_value",
                    t=s.first_touch_in_time,
                    before=d.previous.first_touch_in_time,
                ),
            ),
            Fact(
                text_for("digest_attempts_per_lead"),
                text_for("digest_attempts_per_lead_value", s=s),
            ),
            Fact(
                text_for("digest_reached", s=s),
                text_for(
                    "digest_share_value",
                    t=s.reached_attempts,
                    before=d.previous.reached_attempts,
                ),
            ),
            Fact(
                text_for("digest_verdicts_in_time", s=s),
                text_for("digest_share_value", t=s.verdicts_in_time, before=None),
            ),
        ),
    )


def conversion_section(d: Digest) -> Section:
    lines = tuple(text_for("digest_conversion_line", b=b) for b in d.conversion)
    return Section(
        text_for("digest_conversion_heading", weeks=CONVERSION_WEEKS),
        lines=lines or (text_for("digest_conversion_none"),),
    )


def feedback_section(d: Digest) -> Section:
    lines = tuple(text_for("digest_feedback_highlight", h=h) for h in d.feedback_closed)
    return Section(
        text_for("digest_feedback_heading"),
        facts=(
            Fact(
                text_for("digest_feedback_sent"),
                text_for("digest_feedback_sent_value", f=d.feedback),
            ),
            Fact(text_for("digest_feedback_closed"), str(d.feedback.closed)),
        ),
        lines=lines,
    )


def approvals_section(d: Digest) -> Section:
    return Section(
        text_for("digest_approvals_heading"),
        facts=(
            Fact(
                text_for("digest_approvals_label"),
                text_for("digest_approvals_value", a=d.approvals),
            ),
        ),
    )


def insights_section(d: Digest) -> Section:
    return Section(
        text_for("digest_insights_heading"),
        facts=(
            Fact(
                text_for("digest_insights_label"), text_for("digest_insights_value", i=d.insights)
            ),
        ),
    )


def wins_section(d: Digest) -> Section | None:
    """Praise in public: each win with who made it and the campaign behind it."""
    if not d.wins:
        return None
    lines = _capped(d.wins, SHOWN_WINS, lambda w: text_for("digest_win_line", w=w))
    return Section(text_for("digest_wins_heading"), lines=lines)


def trend_section(d: Digest) -> Section:
    return Section(
        text_for("digest_trend_heading", weeks=len(d.trend)),
        lines=tuple(text_for("digest_trend_line", h=h) for h in d.trend),
    )


def agenda_section(d: Digest) -> Section:
    lines = tuple(f"{n}. {item.question}" for n, item in enumerate(d.agenda, 1))
    return Section(
        text_for("digest_agenda_heading"), lines=lines or (text_for("digest_agenda_none"),)
    )


# The order of the report (the agenda is always added last).
SECTIONS: list[SectionMaker] = [
    funnel_section,
    marketing_section,
    campaigns_section,
    rejections_section,
    sales_section,
    conversion_section,
    feedback_section,
    approvals_section,
    insights_section,
    wins_section,
    trend_section,
]


def report(d: Digest, *, version: int, chart: bytes | None = None) -> Report:
    """The digest as a neutral report; the agenda always comes last."""
    sections = [section for make in SECTIONS if (section := make(d)) is not None]
    return Report(
        title=text_for("digest_title", d=d),
        intro=text_for("digest_intro", d=d, version=version),
        sections=(*sections, agenda_section(d)),
        footer=text_for("digest_footer", d=d),
        chart=chart,
        chart_alt=text_for("digest_chart_alt", d=d),
    )


# ---------------------------------------------------------------- documents


def _documents() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES / "documents"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = markdown_escape
    return env


_MARKDOWN = str.maketrans(
    {
        **{c: "\\" + c for c in "\\`*_[]|~"},
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
    }
)


def markdown_escape(text: str) -> str:
    """User-derived text inert in Markdown: no emphasis, links or HTML."""
    return text.translate(_MARKDOWN)


def document(r: Report, kind: str) -> str:
    """`text`, `markdown` or `html` (for the console, `liaison digest`, email forwarding)."""
    names = {"text": "digest.txt", "markdown": "digest.md", "html": "digest.html"}
    return _documents().get_template(names[kind]).render(r=r).strip() + "\n"
