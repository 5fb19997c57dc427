"""The weekly alignment digest: one neutral report for leadership, built from SQL figures.

`build(session, week, ...)` gathers every figure of one ISO week (Monday to Sunday in the
digest's time zone), the previous week for the change, a 4-week trend, and the agenda for
the weekly sync: the three largest gaps against the commitments, asked of both teams.
Team-level only: no individual is named next to a late or missed figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from storage import approvals as approval_store
from storage import digest as figures
from storage import feedback as feedback_store
from storage import insights as insight_store
from storage import policies
from storage.models import ClockKind, QuestionKind, SlaPolicy
from storage.wins import WinRow, wins_between

TREND_WEEKS = 4
CONVERSION_WEEKS = 12  # conversion by attempts looks back this far: enough leads to mean it
SHOWN_CAMPAIGNS = 8
SHOWN_REJECTIONS = 5


# ---------------------------------------------------------------- weeks


@dataclass(frozen=True)
class Week:
    """An ISO week in a time zone: `start <= t < end`, both UTC-aware."""

    label: str  # "2026-W48"
    start: datetime
    end: datetime
    tz: str

    @classmethod
    def of(cls, label: str, tz: str) -> Week:
        """`2026-W48` in `tz`: from Monday 00:00 to the next Monday 00:00 local time."""
        try:
            year, number = label.upper().split("-W")
            monday = date.fromisocalendar(int(year), int(number), 1)
        except ValueError:
            raise ValueError(f"{label!r} is not an ISO week like 2026-W48") from None
        zone = ZoneInfo(tz)
        start = datetime.combine(monday, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone).astimezone(UTC)
        return cls(f"{int(year)}-W{int(number):02d}", start, end, tz)

    @classmethod
    def containing(cls, moment: datetime, tz: str) -> Week:
        year, number, _ = moment.astimezone(ZoneInfo(tz)).isocalendar()
        return cls.of(f"{year}-W{number:02d}", tz)

    @classmethod
    def last_complete(cls, now: datetime, tz: str) -> Week:
        """The week before the one `now` falls in (what Monday's digest reports)."""
        return cls.containing(now, tz).before()

    def before(self, weeks: int = 1) -> Week:
        local = self.start.astimezone(ZoneInfo(self.tz)) - timedelta(days=7 * weeks)
        return Week.containing(local + timedelta(days=3), self.tz)

    @property
    def days(self) -> str:
        """`23–29 Nov 2026`, the week's local dates."""
        first = self.start.astimezone(ZoneInfo(self.tz))
        last = (self.end - timedelta(seconds=1)).astimezone(ZoneInfo(self.tz))
        return f"{first.day} {first:%b}–{last.day} {last:%b %Y}"


# ---------------------------------------------------------------- the digest's data


@dataclass(frozen=True)
class Target:
    """A figure against its commitment: `actual` vs `target`, both as shown."""

    actual: float | None
    target: float
    met: bool | None  # None when there is nothing to measure yet

    @classmethod
    def at_least(cls, actual: float | None, target: float) -> Target:
        return cls(actual, target, None if actual is None else actual >= target)


@dataclass(frozen=True)
class CampaignLine:
    campaign: str
    generated: int
    accepted: int
    not_a_fit: int
    acceptance_rate: float | None


@dataclass(frozen=True)
class Marketing:
    leads: Target
    acceptance_rate: Target
    campaigns: list[CampaignLine]
    rejections_by_campaign: list[figures.Rejections]
    rejections_by_version: list[figures.Rejections]
    info_answered: int
    info_in_time: Target  # share of questions answered within the window
    info_overdue_now: int


@dataclass(frozen=True)
class Sales:
    first_touch_median_hours: float | None
    first_touch_p90_hours: float | None
    first_touch_in_time: Target  # share within the SLA window (target 1.0)
    first_touch_hours: float  # the window
    attempts_per_lead: float | None
    reached_attempts: Target  # share of closed attempt windows that reached K
    attempts_wanted: int
    verdicts_in_time: Target
    verdict_hours: float


@dataclass(frozen=True)
class Headline:
    """The few figures compared week on week and drawn in the trend."""

    week: str
    leads: int
    acceptance_rate: float | None
    first_touch_in_time: float | None
    reached_attempts: float | None


@dataclass(frozen=True)
class FeedbackHighlight:
    """A feedback request closed in the week: its subject, who answered, and per rating or
    choice question the headline (the mean, the most chosen)."""

    subject: str
    asked: int
    responded: int
    headlines: list[str]


@dataclass(frozen=True)
class AgendaItem:
    side: str  # "marketing" or "sales"
    gap: float  # how far short, as a share of the commitment
    question: str


@dataclass
class Digest:
    week: str
    days: str
    timezone: str
    start: datetime
    end: datetime
    generated_at: datetime
    funnel: figures.FunnelCounts
    marketing: Marketing
    sales: Sales
    conversion: list[figures.AttemptBucket]
    previous: Headline
    trend: list[Headline]  # oldest first, this week last
    feedback: feedback_store.WeekStats
    feedback_closed: list[FeedbackHighlight]
    approvals: approval_store.WeekStats  # kept apart from feedback: blocking sign-offs
    insights: insight_store.InsightWeek
    wins: list[WinRow]
    agenda: list[AgendaItem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Stable keys (documented in README); datetimes as ISO-8601 strings."""
        data: dict[str, Any] = _jsonable(asdict(self))
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------- building it


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def headline(session: Session, week: Week) -> Headline:
    """The trend's few figures for one week, with counts only (no percentiles)."""
    start, end = week.start, week.end
    generated, accepted, not_a_fit = figures.leads_and_verdicts(session, start=start, end=end)
    touched, touched_in_time = figures.clock_counts(
        session, kind=ClockKind.first_touch, start=start, end=end
    )
    windows, reached = figures.clock_counts(session, kind=ClockKind.attempts, start=start, end=end)
    return Headline(
        week=week.label,
        leads=generated,
        acceptance_rate=_rate(accepted, accepted + not_a_fit),
        first_touch_in_time=_rate(touched_in_time, touched),
        reached_attempts=_rate(reached, windows),
    )


def _marketing(
    session: Session, week: Week, counts: figures.FunnelCounts, policy: SlaPolicy
) -> Marketing:
    info_closed, info_met = figures.clock_counts(
        session, kind=ClockKind.info_answer, start=week.start, end=week.end
    )
    campaigns = [
        CampaignLine(
            c.campaign or "(no campaign)",
            c.generated,
            c.accepted,
            c.not_a_fit,
            _rate(c.accepted, c.accepted + c.not_a_fit),
        )
        for c in figures.by_campaign(session, start=week.start, end=week.end)
    ]
    return Marketing(
        leads=Target.at_least(counts.generated, policy.leads_per_week),
        acceptance_rate=Target.at_least(
            _rate(counts.accepted, counts.accepted + counts.not_a_fit), policy.acceptance_rate
        ),
        campaigns=campaigns,
        rejections_by_campaign=figures.rejections_by_campaign(
            session, start=week.start, end=week.end
        ),
        rejections_by_version=figures.rejections_by_version(
            session, start=week.start, end=week.end
        ),
        info_answered=info_closed,
        info_in_time=Target.at_least(_rate(info_met, info_closed), 1.0),
        info_overdue_now=figures.overdue_now(session, kind=ClockKind.info_answer),
    )


def _sales(session: Session, week: Week, policy: SlaPolicy) -> Sales:
    start, end = week.start, week.end
    touch = figures.clock_figures(session, kind=ClockKind.first_touch, start=start, end=end)
    windows, reached = figures.clock_counts(session, kind=ClockKind.attempts, start=start, end=end)
    judged, in_time = figures.clock_counts(session, kind=ClockKind.verdict, start=start, end=end)
    return Sales(
        first_touch_median_hours=_hours(touch.median_seconds),
        first_touch_p90_hours=_hours(touch.p90_seconds),
        first_touch_in_time=Target.at_least(_rate(touch.met, touch.closed), 1.0),
        first_touch_hours=policy.first_touch_hours,
        attempts_per_lead=figures.attempts_of_closed_windows(session, start=start, end=end),
        reached_attempts=Target.at_least(_rate(reached, windows), 1.0),
        attempts_wanted=policy.attempts,
        verdicts_in_time=Target.at_least(_rate(in_time, judged), 1.0),
        verdict_hours=policy.verdict_hours,
    )


def build(session: Session, week: Week, *, now: datetime) -> Digest:
    """Every figure of `week`, the previous week, the trend and the agenda."""
    policy = figures.policy_at(session, at=week.end) or policies.current_policy(session)
    counts = figures.funnel(session, start=week.start, end=week.end)
    trend = [headline(session, week.before(n)) for n in range(TREND_WEEKS - 1, 0, -1)]
    digest = Digest(
        week=week.label,
        days=week.days,
        timezone=week.tz,
        start=week.start,
        end=week.end,
        generated_at=now,
        funnel=counts,
        marketing=_marketing(session, week, counts, policy),
        sales=_sales(session, week, policy),
        conversion=figures.conversion_by_attempts(
            session, start=week.end - timedelta(weeks=CONVERSION_WEEKS), end=week.end
        ),
        previous=trend[-1],
        trend=trend,
        feedback=feedback_store.week_stats(session, start=week.start, end=week.end),
        feedback_closed=_highlights(session, week),
        approvals=approval_store.week_stats(session, start=week.start, end=week.end),
        insights=insight_store.week_stats(session, start=week.start, end=week.end),
        wins=wins_between(session, start=week.start, end=week.end),
    )
    digest.trend.append(
        Headline(
            week=week.label,
            leads=counts.generated,
            acceptance_rate=digest.marketing.acceptance_rate.actual,
            first_touch_in_time=digest.sales.first_touch_in_time.actual,
            reached_attempts=digest.sales.reached_attempts.actual,
        )
    )
    digest.agenda = agenda(digest)
    return digest


def _highlights(session: Session, week: Week) -> list[FeedbackHighlight]:
    from bot.core.text import text_for

    found = []
    for request_id in feedback_store.closed_between(session, start=week.start, end=week.end):
        summary = feedback_store.summary(session, request_id=request_id)
        if summary is None:
            continue
        headlines = []
        for question in summary.questions:
            if question.kind == QuestionKind.rating and question.mean is not None:
                headlines.append(text_for("digest_feedback_rating", q=question))
            elif question.kind == QuestionKind.choice and question.answered:
                option, count = max(question.choices, key=lambda c: c[1])
                headlines.append(
                    text_for("digest_feedback_choice", q=question, option=option, n=count)
                )
        found.append(
            FeedbackHighlight(summary.subject, summary.asked, summary.responded, headlines)
        )
    return found


# ---------------------------------------------------------------- the agenda


def _gap(target: Target) -> float | None:
    """How far short of the commitment, as a share of it (None when met or unmeasured)."""
    if target.actual is None or target.met or not target.target:
        return None
    return (target.target - target.actual) / target.target


def agenda(digest: Digest) -> list[AgendaItem]:
    """The three largest gaps against either side's commitments, as questions for both."""
    from bot.core.text import text_for  # the words live in templates

    candidates = [
        ("marketing", "agenda_leads", digest.marketing.leads),
        ("marketing", "agenda_acceptance", digest.marketing.acceptance_rate),
        ("marketing", "agenda_info", digest.marketing.info_in_time),
        ("sales", "agenda_first_touch", digest.sales.first_touch_in_time),
        ("sales", "agenda_attempts", digest.sales.reached_attempts),
        ("sales", "agenda_verdicts", digest.sales.verdicts_in_time),
    ]
    items = []
    for side, template, target in candidates:
        gap = _gap(target)
        if gap is not None and gap > 0:
            items.append(AgendaItem(side, gap, text_for(template, t=target, d=digest)))
    items.sort(key=lambda item: -item.gap)
    return items[:3]
