"""The weekly digest's figures against a small history computed by hand, on SQLite and
PostgreSQL; week boundaries across time zones and DST; an empty week; rendering within the
platforms' limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from bot.slack.blocks import SECTION_LIMIT, report_blocks
from bot.teams.cards import TEXT_BUDGET, report_card
from digests.chart import chart_png
from digests.digest import Week, build
from digests.report import document, report
from storage import campaigns as stored_campaigns
from storage import leads as stored_leads
from storage import members
from storage.db import Store
from storage.models import (
    ApprovalRequest,
    Campaign,
    Clock,
    ContentItem,
    FeedbackAnswer,
    FeedbackQuestion,
    FeedbackRecipient,
    FeedbackRequest,
    Insight,
    Lead,
    LeadState,
    Member,
    Win,
)

W48 = Week.of("2026-W48", "Europe/London")  # Mon 23 Nov 00:00 GMT to Mon 30 Nov


def at(day: int, hour: int = 10) -> datetime:
    """A moment in November 2026 (GMT is UTC then)."""
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def lead(s: Session, name: str, campaign: Campaign, owner: Member, created: datetime) -> Lead:
    row = Lead(
        source="t",
        external_id=name,
        name=name,
        campaign_id=campaign.id,
        owner_id=owner.id,
        definition_id=1,
        state=LeadState.handed_off.value,
        created_at=created,
        handed_off_at=created,
    )
    s.add(row)
    s.flush()
    return row


def verdict(s: Session, row: Lead, when: datetime, *reasons: tuple[str, str]) -> None:
    accepted = not reasons
    row.state = (LeadState.accepted if accepted else LeadState.not_a_fit).value
    stored_leads.record_verdict(
        s, lead=row, member_id=row.owner_id, now=when, accepted=accepted, reasons=reasons
    )


def attempt(s: Session, row: Lead, when: datetime, outcome: str) -> None:
    stored_leads.record_attempt(
        s, lead=row, member_id=row.owner_id, now=when, channel="call", outcome=outcome
    )


def clock(
    s: Session,
    row: Lead,
    kind: str,
    closed: datetime,
    outcome: str,
    seconds: float,
    owner: Member,
) -> None:
    s.add(
        Clock(
            lead_id=row.id or 0,
            kind=kind,
            ref=f"{kind}-{closed.isoformat()}",
            owner_id=owner.id or 0,
            policy_version=1,
            started_at=closed - timedelta(seconds=seconds),
            budget_seconds=4 * 3600,
            remind_share=0.75,
            grace_seconds=4 * 3600,
            stage=1,
            closed_at=closed,
            outcome=outcome,
            business_seconds=seconds,
        )
    )


@pytest.fixture
def history(any_store: Store) -> Store:
    """Six leads generated in W48 over two campaigns, one from W47 judged in W48, and two
    older leads whose follow-up windows closed in W48; the figures below follow by hand."""
    with any_store.session() as s:
        now = at(1)
        alice = members.upsert_member(s, now=now, email="alice@x.com", name="Alice")
        carol = members.upsert_member(s, now=now, email="carol@x.com", name="Carol")
        webinar = stored_campaigns.ensure_campaign(s, name="Webinar")
        paid = stored_campaigns.ensure_campaign(s, name="Paid search")
        stored_campaigns.ensure_campaign(s, name="Empty campaign")  # no leads: shows nowhere
        l1 = lead(s, "L1", webinar, alice, at(24))
        l2 = lead(s, "L2", webinar, alice, at(24, 11))
        l3 = lead(s, "L3", webinar, alice, at(24, 12))
        l4 = lead(s, "L4", paid, alice, at(25))
        l5 = lead(s, "L5", paid, alice, at(26))
        l6 = lead(s, "L6", paid, alice, at(27))
        l0 = lead(s, "L0", paid, alice, at(20))  # W47
        l7 = lead(s, "L7", webinar, alice, at(9))  # W46
        l8 = lead(s, "L8", webinar, alice, at(9, 11))
        verdict(s, l0, at(23, 9))
        verdict(s, l1, at(24, 11))
        verdict(s, l2, at(25))
        verdict(s, l3, at(25, 12), ("budget", "Budget"), ("authority", "Authority"))
        verdict(s, l4, at(26), ("budget", "Budget"))
        verdict(s, l6, at(27, 12))
        verdict(s, l7, at(9, 12))
        verdict(s, l8, at(9, 13))
        attempt(s, l1, at(24, 12), "no_answer")
        attempt(s, l1, at(25, 10), "meeting_booked")
        attempt(s, l2, at(26, 9), "connected")
        for day in (10, 11, 12, 13):
            attempt(s, l7, at(day), "left_message")
        attempt(s, l7, at(16), "won")
        attempt(s, l8, at(10), "no_answer")
        attempt(s, l8, at(11), "no_answer")
        clock(s, l1, "first_touch", at(24, 12), "met", 3600, alice)
        clock(s, l2, "first_touch", at(26, 9), "met", 7200, alice)
        clock(s, l0, "first_touch", at(23, 12), "missed", 18000, alice)
        clock(s, l7, "attempts", at(24), "met", 40 * 3600, alice)
        clock(s, l8, "attempts", at(25), "missed", 80 * 3600, alice)
        clock(s, l1, "verdict", at(24, 11), "met", 3600, alice)
        clock(s, l3, "verdict", at(25, 12), "met", 5000, alice)
        clock(s, l4, "verdict", at(26), "missed", 90000, alice)
        clock(s, l1, "info_answer", at(24, 15), "met", 1000, carol)
        clock(s, l2, "info_answer", at(26, 15), "missed", 20000, carol)
        s.add(
            Clock(
                lead_id=l5.id or 0,
                kind="info_answer",
                ref="open",
                owner_id=carol.id or 0,
                policy_version=1,
                started_at=at(27),
                budget_seconds=4 * 3600,
                remind_share=0.75,
                grace_seconds=4 * 3600,
                stage=2,  # the tick found it past its window
            )
        )
        marketer_side(s, alice, carol, webinar, l1)
    return any_store


def marketer_side(s: Session, alice: Member, carol: Member, webinar: Campaign, l1: Lead) -> None:
    """W48's feedback loop (a request to two reps, one answers, closed on Friday), its
    approvals (one proposed and approved, one waiting), an insight closed with content and
    one still open, and a win."""
    bob = members.upsert_member(s, now=at(1), email="bob@x.com", name="Bob")
    request = FeedbackRequest(
        requester_id=carol.id or 0,
        about="asset",
        subject="Pricing one-pager",
        audience="all",
        deadline=at(27, 17),
        created_at=at(23, 10),
        closed_at=at(27, 17),
        closed_by="deadline",
    )
    s.add(request)
    s.flush()
    rating = FeedbackQuestion(request_id=request.id or 0, kind="rating", text="Clear?")
    s.add(rating)
    s.flush()
    for member in (alice, bob):
        s.add(FeedbackRecipient(request_id=request.id or 0, member_id=member.id or 0))
    s.add(
        FeedbackAnswer(
            request_id=request.id or 0,
            question_id=rating.id or 0,
            member_id=alice.id or 0,
            value="4",
            answered_at=at(24),
            updated_at=at(24),
        )
    )
    s.add(
        ApprovalRequest(
            subject="leaddef",
            proposed_by=carol.id,
            status="approved",
            version=2,
            created_at=at(23, 11),
            decided_at=at(25, 11),
        )
    )
    s.add(ApprovalRequest(subject="sla", proposed_by=carol.id, created_at=at(26, 11)))
    item = ContentItem(title="ROI sheet", link="https://x.example/roi", created_at=at(25))
    s.add(item)
    s.flush()
    s.add(
        Insight(
            author_id=alice.id or 0,
            kind="question",
            text="Do you integrate with SAP?",
            status="closed",
            marketer_id=carol.id,
            content_id=item.id,
            created_at=at(24),
            closed_at=at(26),
        )
    )
    s.add(Insight(author_id=alice.id or 0, kind="objection", text="Too dear", created_at=at(27)))
    s.add(
        Win(
            author_id=alice.id or 0,
            story="Signed after the webinar",
            lead_id=l1.id,
            campaign_id=webinar.id,
            marketer_id=carol.id,
            created_at=at(27, 15),
        )
    )


def test_every_figure_of_the_week_by_hand(history: Store) -> None:
    with history.session() as s:
        d = build(s, W48, now=at(30, 8))
    f = d.funnel
    assert (f.generated, f.handed_off) == (6, 6)
    assert (f.accepted, f.not_a_fit, f.waiting) == (4, 2, 1)  # L0 L1 L2 L6 / L3 L4 / L5
    assert (f.first_touched, f.attempts, f.attempted_leads) == (2, 3, 2)
    assert f.outcomes == {"meeting_booked": 1, "opportunity": 0, "won": 0, "lost": 0}
    m = d.marketing
    assert (m.leads.actual, m.leads.target, m.leads.met) == (6, 40, False)
    assert m.acceptance_rate.actual == pytest.approx(4 / 6) and m.acceptance_rate.met
    campaigns = {c.campaign: (c.generated, c.accepted, c.not_a_fit) for c in m.campaigns}
    assert campaigns == {"Webinar": (3, 2, 1), "Paid search": (3, 2, 1)}
    assert [(r.group, r.criterion, r.count) for r in m.rejections_by_campaign] == [
        ("Paid search", "Budget", 1),
        ("Webinar", "Authority", 1),
        ("Webinar", "Budget", 1),
    ]
    assert [(r.group, r.criterion, r.count) for r in m.rejections_by_version] == [
        ("v1", "Budget", 2),
        ("v1", "Authority", 1),
    ]
    assert (m.info_answered, m.info_in_time.actual, m.info_overdue_now) == (2, 0.5, 1)
    sales = d.sales
    # First touches closed in W48: 1 h, 2 h (met), 5 h (missed): median 2 h, p90 5 h.
    assert (sales.first_touch_median_hours, sales.first_touch_p90_hours) == (2.0, 5.0)
    assert sales.first_touch_in_time.actual == pytest.approx(2 / 3)
    assert sales.attempts_per_lead == pytest.approx((5 + 2) / 2)
    assert sales.reached_attempts.actual == 0.5
    assert sales.verdicts_in_time.actual == pytest.approx(2 / 3)
    assert [(b.attempts, b.leads, b.converted) for b in d.conversion] == [(2, 1, 0), (5, 1, 1)]
    assert [h.week for h in d.trend] == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    assert [h.leads for h in d.trend] == [0, 2, 1, 6]
    assert d.previous.week == "2026-W47" and d.previous.leads == 1
    # The three largest gaps: leads 85% short, then questions and attempts 50% short.
    assert [(a.side, round(a.gap, 2)) for a in d.agenda] == [
        ("marketing", 0.85),
        ("marketing", 0.5),
        ("sales", 0.5),
    ]
    assert "Leads came in at 6 against a target of 40" in d.agenda[0].question
    # The feedback loop and approvals, each in its own place.
    fb = d.feedback
    assert (fb.sent, fb.asked, fb.responded, fb.closed) == (1, 2, 1, 1)
    (highlight,) = d.feedback_closed
    assert (highlight.subject, highlight.asked, highlight.responded) == ("Pricing one-pager", 2, 1)
    assert highlight.headlines == ["“Clear?”: 4.0 of 5"]
    ap = d.approvals
    assert (ap.proposed, ap.approved, ap.rejected, ap.waiting) == (2, 1, 0, 1)
    ins = d.insights
    assert (ins.raised, ins.closed, ins.closed_with_content) == (2, 1, 1)
    (win,) = d.wins
    assert (win.author, win.marketer, win.campaign) == ("Alice", "Carol", "Webinar")
    # Praise in public, figures by team: a name appears in the wins and nowhere else.
    data = d.to_json()
    assert "Alice" in json.dumps(data["wins"])
    assert "Alice" not in json.dumps({k: v for k, v in data.items() if k != "wins"})


def test_the_report_words_match_the_figures(history: Store) -> None:
    with history.session() as s:
        d = build(s, W48, now=at(30, 8))
    text = document(report(d, version=1), "text")
    assert "Weekly alignment digest · 2026-W48 (23 Nov–29 Nov 2026)" in text
    assert "Generated: 6 (+5 on the week before)" in text
    assert "Acceptance rate: 67% against 60%: met" in text
    assert "Time to first touch: median 2 h, 90th percentile 5 h" in text
    assert "Webinar: 3 leads, 2 accepted, 1 not a fit (67% accepted)" in text
    assert "5 attempts: 100% reached a meeting or better (1 of 1)" in text
    assert "Empty campaign" not in text
    assert text.index("Agenda for the weekly sync") > text.index("The last 4 weeks")
    assert "Pricing one-pager: 1 of 2 answered · “Clear?”: 4.0 of 5" in text
    assert "2 proposed, 1 approved, 0 rejected; 1 waiting at the week's end" in text
    assert "2 raised, 1 answered, 1 of them with content" in text
    assert "Alice · from Carol's Webinar: Signed after the webinar" in text
    assert text.index("The feedback loop") < text.index("Approvals (sign-offs")


def test_an_empty_week_reads_calmly(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        d = build(s, W48, now=at(30, 8))
    assert d.funnel.generated == 0 and d.marketing.campaigns == []
    text = document(report(d, version=1, chart=chart_png(d)), "text")
    assert "no verdicts this week" in text and "no first touches this week" in text
    assert "No follow-up window has ended yet." in text
    # Only the lead target is measurable, and it is the one question on the agenda.
    assert [a.side for a in d.agenda] == ["marketing"]


def test_weeks_follow_the_local_calendar_across_dst() -> None:
    spring = Week.of("2026-W13", "Europe/London")  # clocks go forward on Sun 29 Mar
    assert spring.start == datetime(2026, 3, 23, 0, 0, tzinfo=UTC)
    assert spring.end == datetime(2026, 3, 29, 23, 0, tzinfo=UTC)
    assert spring.end - spring.start == timedelta(hours=167)
    autumn = Week.of("2026-W44", "America/New_York")  # back on Sun 1 Nov
    assert autumn.start == datetime(2026, 10, 26, 4, 0, tzinfo=UTC)
    assert autumn.end - autumn.start == timedelta(hours=169)
    tokyo = Week.of("2026-W48", "Asia/Tokyo")
    assert tokyo.start == datetime(2026, 11, 22, 15, 0, tzinfo=UTC)  # Monday 00:00 JST
    # Sunday 23:30 in New York is still in W48 there, Monday 00:30 is W49.
    sunday_late, monday_early = at(30, 4) + timedelta(minutes=30), at(30, 5) + timedelta(minutes=30)
    assert Week.containing(sunday_late, "America/New_York").label == "2026-W48"
    assert Week.last_complete(monday_early, "America/New_York").label == "2026-W48"
    assert W48.before().label == "2026-W47" and W48.before(48).label == "2025-W52"
    with pytest.raises(ValueError, match="ISO week"):
        Week.of("last week", "UTC")


def test_rendering_fits_the_platforms_however_much_there_is(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        owner = members.upsert_member(s, now=at(1), email="a@x.com", name="A")
        for n in range(120):
            campaign = stored_campaigns.ensure_campaign(s, name=f"Campaign {n:03d} " + "x" * 60)
            row = lead(s, f"C{n}", campaign, owner, at(24))
            verdict(s, row, at(25), (f"c{n}", f"Criterion {n} " + "y" * 80))
    with sqlite_store.session() as s:
        d = build(s, W48, now=at(30, 8))
    made = report(d, version=1, chart=chart_png(d))
    blocks = report_blocks(made)
    assert len(blocks) <= 50
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(t) <= SECTION_LIMIT for t in texts)
    assert any("…and 112 more" in t for t in texts)  # 8 of 120 campaigns shown
    card = report_card(made)
    body = card["content"]["body"]
    assert body[2]["type"] == "Image" and body[2]["url"].startswith("data:image/png;base64,")
    text_size = sum(len(json.dumps(b)) for b in body if b["type"] != "Image")
    assert text_size < TEXT_BUDGET * 2
    assert made.chart and made.chart.startswith(b"\x89PNG")
