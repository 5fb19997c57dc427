"""`liaison demo`: a reproducible company history, written in bulk, that reads like the
live system wrote it — projections that match their events, clocks the tick agrees with,
figures a sales VP and a CMO would both call plausible — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from bot.core.business_time import Company, business_seconds
from digests import sla
from digests.settle import settle_history
from storage.calendars import calendar_of
from storage.db import Store
from storage.demo import company as demo
from storage.demo.company import MEMBERS, create_demo, staff
from storage.leads import better_outcome
from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    Approver,
    Away,
    Campaign,
    Clock,
    ContentItem,
    Criterion,
    FeedbackAnswer,
    FeedbackRecipient,
    FeedbackRequest,
    Holiday,
    Insight,
    Lead,
    LeadDefinition,
    LeadEvent,
    LeadRejection,
    Member,
    OutboxMessage,
    SlaPolicy,
    Win,
)

NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday afternoon in London
TABLES = (
    Member, Campaign, LeadDefinition, Criterion, SlaPolicy, Holiday, Away, Lead, LeadEvent,
    Clock, LeadRejection, ApprovalRequest, ApprovalSignoff, Approver, ContentItem, Insight,
    Win, FeedbackRequest, FeedbackRecipient, FeedbackAnswer, OutboxMessage,
)  # fmt: skip


def run(store: Store, leads: int, seed: int = 7, now: datetime = NOW) -> int:
    with store.session() as session:
        return create_demo(session, leads=leads, seed=seed, now=now)


def counts(store: Store) -> dict[str, int]:
    with store.session() as session:
        return {
            model.__name__: session.exec(select(func.count()).select_from(model)).one()
            for model in TABLES
        }


def fingerprint(store: Store, seed: int) -> str:
    """Every fact of the seed's leads, by external id and email (not by database id)."""
    with store.session() as s:
        email = {m.id: m.email for m in s.exec(select(Member)).all()}
        campaign = {c.id: c.name for c in s.exec(select(Campaign)).all()}
        mine = col(Lead.external_id).like(f"demo-{seed}-%")
        leads = s.exec(select(Lead).where(mine)).all()
        ext = {lead.id: lead.external_id for lead in leads}
        facts: list[Any] = []
        for lead in leads:
            times = (lead.created_at, lead.handed_off_at, lead.verdict_at, lead.first_touch_at)
            facts.append(
                (lead.external_id, lead.name, lead.company, lead.title, lead.attributes,
                 campaign.get(lead.campaign_id), email.get(lead.owner_id), lead.state,
                 lead.attempts, lead.outcome, *(_iso(t) for t in times))
            )  # fmt: skip
        for e in s.exec(select(LeadEvent).join(Lead).where(mine)).all():
            facts.append((ext[e.lead_id], e.kind, email.get(e.member_id), _iso(e.at), e.data))
        for c in s.exec(select(Clock).join(Lead).where(mine)).all():
            facts.append(
                (ext[c.lead_id], c.kind, c.ref, email.get(c.owner_id), c.stage, c.outcome,
                 _iso(c.started_at), _iso(c.next_at), _iso(c.closed_at), c.budget_seconds,
                 None if c.business_seconds is None else round(c.business_seconds, 3))
            )  # fmt: skip
        for r in s.exec(select(LeadRejection).join(Lead).where(mine)).all():
            facts.append((ext[r.lead_id], r.definition_version, r.criterion, _iso(r.at)))
    encoded = sorted(json.dumps(fact, sort_keys=True, default=str) for fact in facts)
    return hashlib.sha256("\n".join(encoded).encode()).hexdigest()


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


# ---------------------------------------------------------------- what the console needs


def test_the_default_demo_is_the_console_company(sqlite_store: Store) -> None:
    assert run(sqlite_store, 24) == 24
    with sqlite_store.session() as s:
        members = {m.email: m for m in s.exec(select(Member)).all()}
        assert set(members) == {email for _, email, *_ in MEMBERS}
        assert {m.handle for m in members.values()} >= {"alice", "bob", "carol", "mark", "dave"}
        alice = members["alice@demo.liaison.dev"]
        waiting = s.exec(
            select(Lead).where(Lead.owner_id == alice.id, Lead.state == "handed_off")
        ).all()
        fresh = [w for w in waiting if NOW - w.created_at < timedelta(hours=5)]
        assert len(fresh) >= 3
        for lead in fresh:  # both clocks running, as the tick would leave them
            clocks = s.exec(select(Clock).where(Clock.lead_id == lead.id)).all()
            assert sorted(c.kind for c in clocks) == ["first_touch", "verdict"]
            assert all(c.closed_at is None for c in clocks)
            _assert_as_the_tick_leaves_it(s, clocks, NOW)
        older = s.exec(select(Lead).where(col(Lead.verdict_at).is_not(None))).all()
        assert len(older) >= 10
        campaigns = s.exec(select(Campaign)).all()
        assert len(campaigns) == len(demo.CAMPAIGNS)
        assert all(c.marketer_id is not None for c in campaigns)
    # The scheduler starts quietly: nothing of the invented past is due.
    assert sla.tick(sqlite_store, now=NOW, company=Company()).looked_at == 0


def test_the_team_grows_with_the_history() -> None:
    assert [(s.name, s.email) for s in staff(24)] == [(n, e) for n, e, *_ in MEMBERS]
    big = staff(1_000_000)
    roles = Counter(s.role for s in big)
    assert roles["rep"] == demo.MAX_REPS and roles["marketer"] >= 5
    assert roles["leader"] == 1 and roles["admin"] == 1
    assert {s.team for s in big if s.role == "manager"} == {"sales", "marketing"}
    assert len({s.timezone for s in big if s.role == "rep"}) >= 5
    emails = {s.email for s in big}
    assert len(emails) == len(big)
    assert all(s.manager in emails for s in big if s.manager)


# ---------------------------------------------------------------- reproducible, idempotent


def test_the_same_seed_gives_the_same_company_on_sqlite_and_postgresql(
    sqlite_store: Store, pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "CHUNK", 1000)  # several chunks, written while planning
    assert run(sqlite_store, 2600) == run(pg_store, 2600) == 2600
    assert counts(sqlite_store) == counts(pg_store)
    assert fingerprint(sqlite_store, 7) == fingerprint(pg_store, 7)


def test_another_seed_gives_another_company(sqlite_store: Store, tmp_path: Path) -> None:
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        run(sqlite_store, 1500, seed=7)
        run(other, 1500, seed=7)
        assert fingerprint(sqlite_store, 7) == fingerprint(other, 7)
        assert run(other, 1500, seed=8) == 1500  # the same database, new leads
        assert fingerprint(other, 8) != fingerprint(other, 7)
        with other.session() as s:
            states = dict(
                s.exec(
                    select(Lead.external_id, Lead.state).where(
                        col(Lead.external_id).like("demo-8-%")
                    )
                ).all()
            )
        assert len(states) == 1500 and set(states.values()) >= {"accepted", "not_a_fit"}
    finally:
        other.engine.dispose()


def test_running_again_adds_nothing(any_store: Store) -> None:
    assert run(any_store, 1200) == 1200
    before = counts(any_store)
    assert run(any_store, 1200) == 0
    assert run(any_store, 1200, now=NOW + timedelta(days=3)) == 0  # nor days later
    assert counts(any_store) == before


def test_an_interrupted_run_is_completed_by_the_next(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "CHUNK", 1000)
    calls = []

    def interrupt(n: int) -> None:  # Ctrl-C after the first chunk is committed
        calls.append(n)
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), sqlite_store.session() as session:
        create_demo(session, leads=3000, seed=7, now=NOW, progress=interrupt)
    assert 1000 <= counts(sqlite_store)["Lead"] < 3000
    kept = counts(sqlite_store)["Lead"]
    assert run(sqlite_store, 3000) == 3000 - kept
    whole = Store.open(f"sqlite:///{tmp_path / 'whole.db'}")
    try:
        run(whole, 3000)
        assert fingerprint(sqlite_store, 7) == fingerprint(whole, 7)
    finally:
        whole.engine.dispose()


# ---------------------------------------------------------------- consistent


def test_projections_and_clocks_follow_the_events(any_store: Store) -> None:
    run(any_store, 3000)
    with any_store.session() as s:
        assert _mismatches(s) == {}
        _check_leads_against_events(s)
        _check_clocks(s)
        _check_references(s)


def _mismatches(s: Session) -> dict[str, int]:
    """Projections compared with their events in SQL: how many leads disagree, per check."""
    same = "(({a}) = ({b}) OR (({a}) IS NULL AND ({b}) IS NULL))"
    first = "(SELECT min(e.at) FROM lead_events e WHERE e.lead_id = l.id AND e.kind IN ({kinds}))"
    checks = {
        "attempts": same.format(
            a="l.attempts",
            b="SELECT count(*) FROM lead_events e WHERE e.lead_id = l.id "
            "AND e.kind = 'attempt_logged'",
        ),
        "verdict_at": same.format(
            a="l.verdict_at", b=first.format(kinds="'accepted', 'not_a_fit'")
        ),
        "first_touch_at": same.format(
            a="l.first_touch_at", b=first.format(kinds="'attempt_logged'")
        ),
        "rejected with reasons": "l.state <> 'not_a_fit' OR EXISTS "
        "(SELECT 1 FROM lead_rejections r WHERE r.lead_id = l.id)",
        "reasons only when rejected": "l.state = 'not_a_fit' OR NOT EXISTS "
        "(SELECT 1 FROM lead_rejections r WHERE r.lead_id = l.id)",
    }
    found = {}
    for name, condition in checks.items():
        bad = s.exec(text(f"SELECT count(*) FROM leads l WHERE NOT ({condition})")).one()[0]  # type: ignore[call-overload]
        if bad:
            found[name] = bad
    return found


def _check_leads_against_events(s: Session) -> None:
    events: dict[int, list[LeadEvent]] = defaultdict(list)
    for event in s.exec(select(LeadEvent).order_by(col(LeadEvent.at), col(LeadEvent.id))).all():
        events[event.lead_id].append(event)
    rejections: dict[int, list[LeadRejection]] = defaultdict(list)
    for row in s.exec(select(LeadRejection)).all():
        rejections[row.lead_id].append(row)
    for lead in s.exec(select(Lead)).all():
        kinds = [e.kind for e in events[lead.id or 0]]
        assert kinds[0] == "ingested"
        if lead.state == "unassigned":
            assert kinds == ["ingested"] and lead.owner_id is None
            continue
        assert kinds[1] == "handed_off" and events[lead.id or 0][1].member_id == lead.owner_id
        best = None
        for event in events[lead.id or 0]:
            if event.kind == "attempt_logged":
                best = better_outcome(best, event.data["outcome"])
        assert lead.outcome == best
        expected = (
            "not_a_fit" if "not_a_fit" in kinds
            else "accepted" if "accepted" in kinds
            else "handed_off"
        )  # fmt: skip
        assert lead.state == expected, (lead.id, kinds)
        if "not_a_fit" in kinds:
            verdict = next(e for e in events[lead.id or 0] if e.kind == "not_a_fit")
            rows = rejections[lead.id or 0]
            assert [r.criterion for r in rows] == verdict.data["criteria"]
            assert {r.definition_version for r in rows} == {verdict.data["definition_version"]}
            assert all(r.at == verdict.at and r.campaign_id == lead.campaign_id for r in rows)
        asked = [e.data["question_id"] for e in events[lead.id or 0] if e.kind == "info_requested"]
        answered = [
            e.data["question_id"] for e in events[lead.id or 0] if e.kind == "info_answered"
        ]
        assert set(answered) <= set(asked)


def _check_clocks(s: Session) -> None:
    """Closed clocks: outcome and business time as `clocks.close` gives them, at the event
    that closes them; open ones: the stage and next step the tick would give them."""
    company = Company()
    owners = {m.id: m for m in s.exec(select(Member)).all()}
    calendars = {i: calendar_of(s, m, company) for i, m in owners.items()}
    closing: dict[tuple[int, str, str], datetime] = {}
    for e in s.exec(select(LeadEvent).order_by(col(LeadEvent.at), col(LeadEvent.id))).all():
        if e.kind in ("accepted", "not_a_fit"):
            closing.setdefault((e.lead_id, "verdict", ""), e.at)
        if e.kind in ("attempt_logged", "not_a_fit"):
            closing.setdefault((e.lead_id, "first_touch", ""), e.at)
        if e.kind == "info_answered":
            closing[(e.lead_id, "info_answer", e.data["question_id"])] = e.at
    clocks = s.exec(select(Clock)).all()
    assert Counter(c.kind for c in clocks).keys() == {
        "first_touch", "verdict", "attempts", "info_answer"
    }  # fmt: skip
    open_clocks = []
    for clock in clocks:
        calendar = calendars[clock.owner_id]
        if clock.closed_at is None:
            open_clocks.append(clock)
            continue
        if clock.kind != "attempts":
            assert closing[(clock.lead_id, clock.kind, clock.ref)] == clock.closed_at
        if clock.outcome == "cancelled":
            assert clock.business_seconds is None
            continue
        assert clock.business_seconds is not None
        worked = business_seconds(calendar, clock.started_at, clock.closed_at)
        assert clock.business_seconds == pytest.approx(worked, abs=1e-3)
        due = sla.Steps.of(clock, calendar).due
        if clock.outcome == "ended":  # the buyer answered before the attempts were made
            assert clock.kind == "attempts"
            continue
        if clock.kind == "attempts" and clock.closed_at == due:  # the window ran out
            assert clock.outcome == "missed" and clock.stage == 3
            continue
        assert clock.outcome == ("met" if clock.closed_at <= due else "missed")
    assert open_clocks
    _assert_as_the_tick_leaves_it(s, open_clocks, NOW)


def _assert_as_the_tick_leaves_it(s: Session, clocks: Any, now: datetime) -> None:
    for clock in clocks:
        owner = s.get(Member, clock.owner_id)
        assert owner is not None
        steps = sla.Steps.of(clock, calendar_of(s, owner, Company()))
        stage = sum(step <= now for step in (steps.remind, steps.due, steps.escalate))
        assert (clock.stage, clock.next_at) == (stage, steps.next_after(stage)), clock


def _check_references(s: Session) -> None:
    """What the database would have refused (PostgreSQL may skip the checks for the load)."""
    orphans = {
        "events": "SELECT count(*) FROM lead_events e LEFT JOIN leads l ON l.id = e.lead_id "
        "WHERE l.id IS NULL",
        "event members": "SELECT count(*) FROM lead_events e LEFT JOIN members m "
        "ON m.id = e.member_id WHERE e.member_id IS NOT NULL AND m.id IS NULL",
        "clocks": "SELECT count(*) FROM sla_clocks c LEFT JOIN leads l ON l.id = c.lead_id "
        "LEFT JOIN members m ON m.id = c.owner_id WHERE l.id IS NULL OR m.id IS NULL",
        "rejections": "SELECT count(*) FROM lead_rejections r LEFT JOIN leads l "
        "ON l.id = r.lead_id WHERE l.id IS NULL",
        "leads": "SELECT count(*) FROM leads l LEFT JOIN members m ON m.id = l.owner_id "
        "LEFT JOIN campaigns c ON c.id = l.campaign_id LEFT JOIN lead_definitions d "
        "ON d.id = l.definition_id WHERE (l.owner_id IS NOT NULL AND m.id IS NULL) "
        "OR c.id IS NULL OR d.id IS NULL",
    }
    found = {k: s.exec(text(q)).one()[0] for k, q in orphans.items()}  # type: ignore[call-overload]
    assert found == dict.fromkeys(orphans, 0)


# ---------------------------------------------------------------- realistic


def test_the_figures_look_like_a_real_company(sqlite_store: Store) -> None:
    run(sqlite_store, 8000)
    with sqlite_store.session() as s:
        leads = s.exec(select(Lead)).all()
        policy = s.exec(select(SlaPolicy).order_by(col(SlaPolicy.version).desc())).first()
        assert policy is not None
        monday = NOW.date() - timedelta(days=NOW.weekday())
        weeks = Counter((lead.created_at.date() - monday).days // 7 for lead in leads)
        full = [n for week, n in weeks.items() if week < 0]
        assert sorted(weeks) == list(range(-25, 1))  # 26 weeks, each with leads
        assert 0 < sum(n < policy.leads_per_week for n in full) < len(full) / 2
        decided = [lead for lead in leads if lead.verdict_at is not None]
        accepted = s.exec(select(func.count()).where(LeadEvent.kind == "accepted")).one()
        assert 0.58 < accepted / len(decided) < 0.72
        waiting = [lead for lead in leads if lead.state == "handed_off"]
        assert 0 < len(waiting) < 0.03 * len(leads)
        rate = _conversion_by_attempts([lead for lead in leads if lead.state == "accepted"])
        assert 0.12 < rate[1, 2] < 0.3 and 0.45 < rate[5, 5] < 0.65 and 0.55 < rate[7, 8] < 0.75
        closed = col(Clock.outcome).in_(["met", "missed"])
        touches = s.exec(select(Clock).where(Clock.kind == "first_touch", closed)).all()
        met = sum(c.outcome == "met" for c in touches) / len(touches)
        assert 0.75 < met < 0.93
        hours = sorted((c.business_seconds or 0) / 3600 for c in touches)
        assert 0.5 < hours[len(hours) // 2] < 2.5 and 4 < hours[int(0.9 * len(hours))] < 10
        answers = s.exec(select(Clock).where(Clock.kind == "info_answer")).all()
        assert 0.05 < sum(c.outcome == "missed" for c in answers) / len(answers) < 0.3
        by_version = Counter(
            s.exec(select(LeadRejection.definition_version, LeadRejection.criterion)).all()
        )
        assert {v for v, _ in by_version} == {1, 2}
        assert by_version[2, "company_size"] > 0 and by_version[1, "company_size"] == 0
        worst = s.exec(
            select(Campaign.name, func.count())
            .join(LeadRejection, col(LeadRejection.campaign_id) == Campaign.id)
            .where(LeadRejection.criterion == "valid_contact")
            .group_by(col(Campaign.name))
            .order_by(func.count().desc())
        ).first()
        assert worst is not None and worst[0] == "Purchased list: Industry directory"


def _conversion_by_attempts(leads: list[Lead]) -> dict[tuple[int, int], float]:
    """Share of leads with a meeting or better, for leads with `low`–`high` attempts."""
    old = [lead for lead in leads if lead.verdict_at and lead.verdict_at < NOW - timedelta(days=30)]
    rate = {}
    for low, high in ((1, 2), (5, 5), (7, 8)):
        group = [lead for lead in old if low <= lead.attempts <= high]
        won = sum(lead.outcome in ("meeting_booked", "opportunity", "won") for lead in group)
        rate[low, high] = won / len(group)
    return rate


def test_the_marketers_side_and_the_approvals(sqlite_store: Store) -> None:
    run(sqlite_store, 3000)
    with sqlite_store.session() as s:
        definitions = s.exec(select(LeadDefinition).order_by(col(LeadDefinition.version))).all()
        assert [d.version for d in definitions] == [1, 2]
        requests = {r.subject: r for r in s.exec(select(ApprovalRequest)).all()}
        assert requests["leaddef"].status == "approved" and requests["leaddef"].version == 2
        assert requests["sla"].status == "bootstrap" and requests["sla"].proposer_label
        signoffs = s.exec(select(ApprovalSignoff)).all()
        assert {(o.side, o.decision) for o in signoffs} == {
            ("sales", "approved"), ("marketing", "approved")
        }  # fmt: skip
        assert all(o.decided_at and o.decided_at <= definitions[1].created_at for o in signoffs)
        assert len(s.exec(select(Approver)).all()) == 2
        insights = s.exec(select(Insight)).all()
        closed = [i for i in insights if i.status == "closed"]
        assert closed and all(i.closed_at and i.closed_at <= NOW for i in closed)
        assert any(i.content_id for i in closed) and any(i.status == "open" for i in insights)
        for win in s.exec(select(Win)).all():
            lead = s.get(Lead, win.lead_id)
            assert lead is not None and lead.outcome == "won" and win.author_id == lead.owner_id
            assert win.created_at <= NOW
        assert s.exec(select(func.count()).select_from(Win)).one() > 0
        for request in s.exec(select(FeedbackRequest)).all():
            assert request.closed_at == request.deadline <= NOW and request.remind_at is None
        asked = {(r.request_id, r.member_id) for r in s.exec(select(FeedbackRecipient)).all()}
        answers = s.exec(select(FeedbackAnswer)).all()
        assert answers and {(a.request_id, a.member_id) for a in answers} <= asked
        assert s.exec(select(func.count()).select_from(ContentItem)).one() >= 8


def test_settling_the_history_sends_nothing_of_the_past(sqlite_store: Store) -> None:
    run(sqlite_store, 600)
    later = NOW + timedelta(hours=2)  # the demo took a while; some steps fell due meanwhile
    settle_history(sqlite_store, now=later, company=Company())
    with sqlite_store.session() as s:
        outbox = s.exec(select(OutboxMessage)).all()
    assert outbox and all(m.status == "sent" and m.platform == "demo-history" for m in outbox)
    assert sla.tick(sqlite_store, now=later, company=Company()).messages == 0
