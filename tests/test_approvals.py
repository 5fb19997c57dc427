"""Approvals through the router against a real database: proposing a new lead-definition or
SLA version, both sides signing off, the version coming into force only with the last
approval, rejections, the history, and every kind of bad input answered privately."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import Effect, FormErrors, Owed, Reply, ShowForm
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import Card, Form, card_from_dict
from handlers.ingest import LeadIn, store_leads
from storage import approvals, definitions, policies
from storage import members as stored_members
from storage.db import Store
from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    LeadDefinition,
    Member,
    OutboxMessage,
    SlaPolicy,
)
from tests.support import owed

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday
router = build_router()


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    return company(sqlite_store)


def company(store: Store) -> dict[str, Member]:
    """Carol proposes (marketer); Bob and Sam sign for sales, Dave for marketing; Alice is a
    rep, Olga a marketer who is not an approver, Eve the admin."""
    with store.session() as s:
        found = {
            key: stored_members.upsert_member(
                s, now=NOW, email=f"{key}@x.com", name=name, role=role
            )
            for key, name, role in (
                ("carol", "Carol Chen", "marketer"),
                ("bob", "Bob Brown", "manager"),
                ("sam", "Sam Stone", "leader"),
                ("dave", "Dave Davis", "manager"),
                ("alice", "Alice Adams", "rep"),
                ("olga", "Olga Ortiz", "marketer"),
                ("eve", "Eve Ellis", "admin"),
            )
        }
        approvals.set_approvers(
            s, side="sales", member_ids=[found["bob"].id or 0, found["sam"].id or 0]
        )
        approvals.set_approvers(s, side="marketing", member_ids=[found["dave"].id or 0])
        return found


def run(
    store: Store,
    who: Member,
    kind: Kind,
    name: str,
    *,
    text: str = "",
    at: datetime = NOW,
    values: dict[str, str] | None = None,
    args: dict[str, str] | None = None,
) -> list[Effect]:
    interaction = Interaction(
        kind,
        name,
        who,
        Where("test", "D1"),
        args=args or {},
        values={k: [v] for k, v in (values or {}).items()},
        request_id=f"form:{(args or {}).get('nonce')}" if kind is Kind.form else "",
        text=text,
    )
    return list(router.dispatch(store, interaction, at))


def command(store: Store, who: Member, line: str, at: datetime = NOW) -> list[Effect]:
    name, _, text = line.partition(" ")
    return run(store, who, Kind.command, name, text=text, at=at)


def the_form(effects: list[Effect]) -> Form:
    (shown,) = effects
    assert isinstance(shown, ShowForm), effects
    return shown.form


def initial(form: Form, name: str) -> str:
    return next(i.initial[0] for i in form.inputs if i.name == name)


def said(effects: list[Effect]) -> str:
    """Everything the actor reads in the private answers."""
    cards = [e.card for e in effects if isinstance(e, Reply)]
    return "\n".join(text_of(card) for card in cards)


def text_of(card: Card) -> str:
    parts = [card.title, card.text, card.context]
    parts += [f"{f.label}: {f.value}" for f in card.fields]
    parts += [b.label for b in card.buttons]
    return "\n".join(parts)


def errors(effects: list[Effect]) -> dict[str, str]:
    (refused,) = effects
    assert isinstance(refused, FormErrors), effects
    return refused.errors


def submit(
    store: Store, who: Member, form: Form, at: datetime = NOW, **values: str
) -> list[Effect]:
    return run(store, who, Kind.form, form.name, values=values, args=form.state, at=at)


NEW_CRITERIA = (
    "budget: Budget approved for this year\n"
    "authority: Talks to or is a decision maker (manager or above)\n"
    "need: A need our product solves\n"
    "territory: In our sales territory\n"
    "valid_contact: Valid, reachable contact details\n"
    "icp: Matches the ideal customer profile\n"
)


def propose_leaddef(store: Store, who: Member, criteria: str = NEW_CRITERIA) -> list[Effect]:
    form = the_form(command(store, who, "leaddef propose"))
    return submit(store, who, form, criteria=criteria, note="Q1 tightening after the review")


def decide(
    store: Store, who: Member, request_id: int, decision: str, comment: str = "", at: datetime = NOW
) -> list[Effect]:
    action = "approval.approve" if decision == "approve" else "approval.reject"
    opened = run(store, who, Kind.action, action, args={"request": str(request_id)}, at=at)
    if not (len(opened) == 1 and isinstance(opened[0], ShowForm)):
        return opened
    return submit(store, who, opened[0].form, at=at, comment=comment)


def version_in_force(store: Store) -> int:
    with store.session() as s:
        return definitions.current_definition(s)[0].version


def the_request(store: Store, request_id: int = 1) -> ApprovalRequest:
    with store.session() as s:
        found = approvals.get_request(s, request_id=request_id)
        assert found is not None
        return found


def asked(store: Store, member: Member) -> list[OutboxMessage]:
    return [m for m in owed(store, member.id) if ":ask:" in m.key]


# ---------------------------------------------------------------- the lead definition


def test_a_change_waits_for_both_sides_then_comes_into_force(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    form = the_form(command(sqlite_store, people["carol"], "leaddef propose"))
    assert initial(form, "criteria").splitlines()[0] == "budget: Budget confirmed or likely"
    assert "timing: Buying within the next two quarters" in initial(form, "criteria")
    effects = submit(
        sqlite_store, people["carol"], form, criteria=NEW_CRITERIA, note="Q1 tightening"
    )
    assert "Approval #1 is on its way to Bob Brown, Sam Stone, Dave Davis" in said(effects)
    assert Owed(3) in effects
    # Each approver of both sides is asked once, with the change as a diff and two buttons.
    for key in ("bob", "sam", "dave"):
        (ask,) = asked(sqlite_store, people[key])
        assert ask.key == f"approval:1:ask:{people[key].id}"
        card = card_from_dict(ask.card)
        assert [b.label for b in card.buttons] == ["Approve", "Reject"]
        body = text_of(card)
        assert "Added: icp: Matches the ideal customer profile" in body
        assert "Edited: budget: Budget confirmed or likely → Budget approved for this year" in body
        assert "Retired: timing: Buying within the next two quarters" in body
        assert "Q1 tightening" in body
    with sqlite_store.session() as s:
        signoffs = s.exec(select(ApprovalSignoff).order_by(col(ApprovalSignoff.member_id))).all()
        assert [(x.side, x.decision) for x in signoffs] == [
            ("sales", None),
            ("sales", None),
            ("marketing", None),
        ]

    # The version in force stays v1 until the very last approval.
    bob_said = said(decide(sqlite_store, people["bob"], 1, "approve", "Fine by sales"))
    assert "You approved approval #1" in bob_said and "Sam Stone, Dave Davis" in bob_said
    assert version_in_force(sqlite_store) == 1
    progress = [m for m in owed(sqlite_store, people["carol"].id) if ":approved:" in m.key]
    assert len(progress) == 1 and "Bob Brown approved" in progress[0].card["title"]
    decide(sqlite_store, people["dave"], 1, "approve")
    assert version_in_force(sqlite_store) == 1
    assert the_request(sqlite_store).status == "pending"

    last = decide(sqlite_store, people["sam"], 1, "approve", "Agreed")
    assert "Lead definition v2 is now in force" in said(last)
    assert version_in_force(sqlite_store) == 2
    request = the_request(sqlite_store)
    assert (request.status, request.version, request.remind_at) == ("approved", 2, None)
    with sqlite_store.session() as s:
        definition, criteria = definitions.current_definition(s)
        assert [c.key for c in criteria] == [
            "budget",
            "authority",
            "need",
            "territory",
            "valid_contact",
            "icp",
        ]
        assert definition.created_by == "Carol Chen"
        assert "approved by Bob Brown, Sam Stone, Dave Davis" in definition.note
    # The proposer and the other approvers hear so; the last approver was answered directly.
    for key in ("carol", "bob", "dave"):
        done = [m for m in owed(sqlite_store, people[key].id) if ":done:" in m.key]
        assert len(done) == 1 and "v2 is now in force" in done[0].card["title"]
    assert not [m for m in owed(sqlite_store, people["sam"].id) if ":done:" in m.key]

    # /leaddef shows the new version, and a new Not a fit form offers its criteria.
    shown = said(command(sqlite_store, people["alice"], "leaddef"))
    assert "Lead definition v2" in shown and "icp" in shown and "timing" not in shown
    with sqlite_store.session() as s:
        (outcome,), _ = store_leads(
            s,
            [LeadIn(external_id="N1", name="Nia", owner_email="alice@x.com")],  # type: ignore[call-arg]
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
    not_a_fit = the_form(
        run(
            sqlite_store,
            people["alice"],
            Kind.action,
            "lead.not_a_fit",
            args={"lead_id": str(outcome.lead_id)},
        )
    )
    options = [o.value for o in not_a_fit.inputs[0].options]
    assert options == ["budget", "authority", "need", "territory", "valid_contact", "icp"]
    assert "v2" in not_a_fit.intro

    # The whole history: who, when, and what they said.
    history = said(command(sqlite_store, people["olga"], "approvals 1"))
    assert "approved, v2 in force" in history
    assert "Bob Brown (sales): approved on Mon 23 Nov 10:00 UTC: “Fine by sales”" in history
    assert "Sam Stone (sales): approved on Mon 23 Nov 10:00 UTC: “Agreed”" in history
    assert "Dave Davis (marketing): approved on" in history
    assert "Proposed by Carol Chen" in history


def test_one_rejection_closes_the_request(sqlite_store: Store, people: dict[str, Member]) -> None:
    propose_leaddef(sqlite_store, people["carol"])
    decide(sqlite_store, people["bob"], 1, "approve")
    # Rejecting needs a reason.
    form = the_form(
        run(sqlite_store, people["dave"], Kind.action, "approval.reject", args={"request": "1"})
    )
    assert next(i for i in form.inputs if i.name == "comment").required
    assert (
        "Carol Chen" in errors(submit(sqlite_store, people["dave"], form, comment="  "))["comment"]
    )
    effects = submit(
        sqlite_store, people["dave"], form, comment="Keep timing: it is our best predictor"
    )
    assert "You rejected approval #1" in said(effects)
    request = the_request(sqlite_store)
    assert request.status == "rejected" and request.version is None and request.remind_at is None
    assert version_in_force(sqlite_store) == 1
    (told,) = [m for m in owed(sqlite_store, people["carol"].id) if ":rejected:" in m.key]
    card = card_from_dict(told.card)
    assert "Dave Davis rejected the new lead definition (#1)" in card.title
    assert "Keep timing: it is our best predictor" in card.text and "leaddef propose" in card.text
    # The others are told it is closed; nobody can decide on it any more.
    for key in ("bob", "sam"):
        assert [m for m in owed(sqlite_store, people[key].id) if ":rejected:" in m.key]
    late = said(decide(sqlite_store, people["sam"], 1, "approve"))
    assert "already closed: rejected" in late
    history = said(command(sqlite_store, people["carol"], "approvals 1"))
    assert "rejected" in history and "Keep timing: it is our best predictor" in history
    assert "Sam Stone (sales): did not decide before it closed" in history
    # A new proposal may follow at once.
    assert "Approval #2 is on its way" in said(propose_leaddef(sqlite_store, people["carol"]))


def test_each_approver_decides_once_and_only_approvers_decide(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    propose_leaddef(sqlite_store, people["carol"])
    decide(sqlite_store, people["bob"], 1, "approve", "ok")
    twice = said(decide(sqlite_store, people["bob"], 1, "reject", "changed my mind"))
    assert "You already approved approval #1 on Mon 23 Nov 10:00 UTC" in twice
    # The same form submitted again acts once (its nonce).
    form = the_form(
        run(sqlite_store, people["sam"], Kind.action, "approval.approve", args={"request": "1"})
    )
    submit(sqlite_store, people["sam"], form, comment="yes")
    assert submit(sqlite_store, people["sam"], form, comment="yes") == []
    # Outsiders, including admins and the proposer, are not approvers of this request.
    for key in ("olga", "eve", "alice", "carol"):
        refused = said(decide(sqlite_store, people[key], 1, "approve"))
        assert "Only the approvers approval #1 was sent to can decide on it" in refused
        assert "Bob Brown (sales), Sam Stone (sales), Dave Davis (marketing)" in refused
    with sqlite_store.session() as s:
        decided = s.exec(select(ApprovalSignoff).where(col(ApprovalSignoff.decision).is_not(None)))
        assert len(decided.all()) == 2
    assert "There is no approval #99" in said(decide(sqlite_store, people["bob"], 99, "approve"))
    assert version_in_force(sqlite_store) == 1


def test_bad_criteria_are_named_line_by_line(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    form = the_form(command(sqlite_store, people["carol"], "leaddef propose"))

    def problem(criteria: str, note: str = "why") -> str:
        return errors(submit(sqlite_store, people["carol"], form, criteria=criteria, note=note))[
            "criteria"
        ]

    # A line without a key is no problem any more (see the test below); its text still is.
    assert "the text has 201 characters; 200 at most" in problem("icp: Ideal\n" + "x" * 201)
    assert "the key budget is already used on line 1" in problem("budget: One\nbudget: Two")
    assert "“Budget Now” is not a short key; use a-z, 0-9 and _ only, e.g. budget_now" in problem(
        "Budget Now: Has budget"
    )
    assert "Line 1: icp has no text after the colon" in problem("icp:   \nneed: A need")
    assert "the text has 201 characters; 200 at most" in problem("icp: " + "x" * 201)
    assert "Keep at least one criterion" in problem("\n  \n")
    assert "21 criteria; 20 at most" in problem("\n".join(f"c{i}: Text {i}" for i in range(21)))
    nothing = problem(initial(form, "criteria"))
    assert "Nothing changed: this is v1 as it is in force" in nothing
    # Reordering alone is not a change either.
    lines = initial(form, "criteria").splitlines()
    assert "Nothing changed" in problem("\n".join(reversed(lines)))
    # The note is required and limited; blaming phrasing is held back.
    refused = errors(submit(sqlite_store, people["carol"], form, criteria=NEW_CRITERIA, note=""))
    assert refused == {"note": "Say why, so the approvers can weigh the change."}
    too_long = submit(sqlite_store, people["carol"], form, criteria=NEW_CRITERIA, note="x" * 501)
    assert "500" in errors(too_long)["note"]
    blaming = submit(
        sqlite_store, people["carol"], form, criteria=NEW_CRITERIA, note="reps are lazy reps"
    )
    assert "not sent" in errors(blaming)["note"]
    with sqlite_store.session() as s:
        assert s.exec(select(ApprovalRequest)).all() == []


def test_who_may_propose_and_when(sqlite_store: Store, people: dict[str, Member]) -> None:
    refused = said(command(sqlite_store, people["alice"], "leaddef propose"))
    assert "Only marketer, manager, leader, admin members can propose a new lead definition" in (
        refused
    )
    assert "you are a rep" in refused
    assert "you are a rep" in said(command(sqlite_store, people["alice"], "sla propose"))
    # A rep's forged submit is refused too.
    form = the_form(command(sqlite_store, people["carol"], "leaddef propose"))
    forged = submit(sqlite_store, people["alice"], form, criteria=NEW_CRITERIA, note="mine")
    assert "you are a rep" in said(forged)
    for key in ("olga", "dave", "sam", "eve"):  # marketer, manager, leader, admin
        assert isinstance(command(sqlite_store, people[key], "leaddef propose")[0], ShowForm)

    # One proposal per subject at a time; the other subject is independent.
    opened_before = the_form(command(sqlite_store, people["olga"], "leaddef propose"))
    propose_leaddef(sqlite_store, people["carol"])
    waiting = said(command(sqlite_store, people["olga"], "leaddef propose"))
    assert "One proposal at a time: approval #1 (a new lead definition proposed by Carol Chen" in (
        waiting
    )
    assert "still waiting for Bob Brown, Sam Stone, Dave Davis" in waiting
    late = submit(
        sqlite_store, people["olga"], opened_before, criteria=NEW_CRITERIA, note="also mine"
    )
    assert "One proposal at a time" in said(late)
    assert isinstance(command(sqlite_store, people["olga"], "sla propose")[0], ShowForm)


def test_no_approvers_no_proposal(sqlite_store: Store, people: dict[str, Member]) -> None:
    with sqlite_store.session() as s:
        approvals.set_approvers(s, side="marketing", member_ids=[])
    refused = said(command(sqlite_store, people["carol"], "leaddef propose"))
    assert "No approvers are named for marketing yet" in refused
    assert "liaison approvers set --sales EMAIL[,EMAIL…] --marketing EMAIL[,EMAIL…]" in refused
    with sqlite_store.session() as s:
        approvals.set_approvers(s, side="sales", member_ids=[])
    assert "for sales and marketing" in said(command(sqlite_store, people["carol"], "sla propose"))


def test_a_proposer_who_is_an_approver_signs_by_proposing(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    effects = propose_leaddef(sqlite_store, people["dave"])
    assert "on its way to Bob Brown, Sam Stone" in said(effects)
    assert not asked(sqlite_store, people["dave"])
    decide(sqlite_store, people["bob"], 1, "approve")
    decide(sqlite_store, people["sam"], 1, "approve")
    assert version_in_force(sqlite_store) == 2
    history = said(command(sqlite_store, people["carol"], "approvals 1"))
    assert "Dave Davis (marketing): approved on Mon 23 Nov 10:00 UTC: “Proposed it.”" in history


# ---------------------------------------------------------------- the SLA


def sla_values(**changes: str) -> dict[str, str]:
    values = {
        "first_touch_hours": "4",
        "verdict_hours": "24",
        "attempts": "5",
        "attempts_days": "10",
        "leads_per_week": "40",
        "acceptance_rate": "60%",
        "info_answer_hours": "4",
        "remind_share": "0.75",
        "escalate_after_hours": "4",
        "note": "Faster first touch, more leads",
    }
    return {**values, **changes}


def test_an_sla_proposal_comes_into_force_when_all_approve(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    form = the_form(command(sqlite_store, people["olga"], "sla propose"))
    assert {i.name: i.initial[0] for i in form.inputs if i.initial} == {
        k: v for k, v in sla_values().items() if k != "note"
    }
    effects = submit(
        sqlite_store,
        people["olga"],
        form,
        **sla_values(first_touch_hours="3", leads_per_week="45", acceptance_rate="0.65"),
    )
    assert "Approval #1 is on its way" in said(effects)
    (ask,) = asked(sqlite_store, people["bob"])
    body = text_of(card_from_dict(ask.card))
    assert "First touch (business hours after handoff): 4 → 3" in body
    assert "Leads per week (marketing): 40 → 45" in body
    assert "Acceptance rate, at least (e.g. 60%): 60% → 65%" in body
    assert "Verdict" not in body
    for key in ("bob", "sam", "dave"):
        with sqlite_store.session() as s:
            assert policies.current_policy(s).version == 1
        decide(sqlite_store, people[key], 1, "approve")
    with sqlite_store.session() as s:
        policy = policies.current_policy(s)
        assert (policy.version, policy.first_touch_hours, policy.leads_per_week) == (2, 3, 45)
        assert policy.acceptance_rate == pytest.approx(0.65) and policy.verdict_hours == 24
        assert policy.created_by == "Olga Ortiz" and "approved by" in policy.note
    assert "Service-level agreement v2" in said(command(sqlite_store, people["alice"], "sla"))


def test_bad_sla_numbers_are_refused_with_the_sla_set_limits(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    form = the_form(command(sqlite_store, people["olga"], "sla propose"))

    def refused(**changes: str) -> dict[str, str]:
        return errors(submit(sqlite_store, people["olga"], form, **sla_values(**changes)))

    assert refused(first_touch_hours="0") == {
        "first_touch_hours": "Give a number, more than 0 and at most 720."
    }
    assert refused(attempts="5.5") == {
        "attempts": "Give a whole number, at least 1 and at most 50."
    }
    assert refused(remind_share="1") == {
        "remind_share": "Give a number, more than 0 and less than 1."
    }
    assert "percentage" in refused(acceptance_rate="60")["acceptance_rate"]
    assert "percentage" in refused(acceptance_rate="sixty%")["acceptance_rate"]
    both = refused(verdict_hours="soon", leads_per_week="-1")
    assert set(both) == {"verdict_hours", "leads_per_week"}
    assert refused(escalate_after_hours="")["escalate_after_hours"] == "A value is needed here."
    assert "Nothing changed: this is v1" in refused()["first_touch_hours"]
    assert refused(note="")["note"].startswith("Say why")
    with sqlite_store.session() as s:
        assert s.exec(select(ApprovalRequest)).all() == []
        assert len(s.exec(select(SlaPolicy)).all()) == 1


def test_an_sla_rejection_keeps_the_sla(sqlite_store: Store, people: dict[str, Member]) -> None:
    form = the_form(command(sqlite_store, people["olga"], "sla propose"))
    submit(sqlite_store, people["olga"], form, **sla_values(attempts="3"))
    decide(sqlite_store, people["sam"], 1, "reject", "Three attempts is too few for enterprise")
    with sqlite_store.session() as s:
        assert policies.current_policy(s).attempts == 5
    (told,) = [m for m in owed(sqlite_store, people["olga"].id) if ":rejected:" in m.key]
    assert "Sam Stone rejected the new SLA (#1)" in told.card["title"]


# ---------------------------------------------------------------- /approvals


def test_approvals_lists_what_waits_on_me_and_what_i_proposed(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    propose_leaddef(sqlite_store, people["carol"])
    form = the_form(command(sqlite_store, people["olga"], "sla propose"))
    submit(sqlite_store, people["olga"], form, **sla_values(verdict_hours="16"))

    overview, *cards = command(sqlite_store, people["bob"], "approvals")
    assert isinstance(overview, Reply)
    assert "2 requests wait for your sign-off" in overview.card.text
    fields = {f.label: f.value for f in overview.card.fields}
    assert fields["Sales approvers"] == "Bob Brown, Sam Stone"
    assert fields["Marketing approvers"] == "Dave Davis"
    assert [type(c) for c in cards] == [Reply, Reply]
    assert all([b.label for b in c.card.buttons] == ["Approve", "Reject"] for c in cards)  # type: ignore[union-attr]
    decide(sqlite_store, people["bob"], 1, "approve")
    assert len(command(sqlite_store, people["bob"], "approvals")) == 2

    (mine,) = command(sqlite_store, people["carol"], "approvals")
    assert "Nothing waits for your sign-off" in said([mine])
    assert (
        "You proposed #1 (lead definition): waiting for Sam Stone, Dave Davis (1 of 3 signed)"
        in (said([mine]))
    )
    for key in ("dave", "sam"):
        decide(sqlite_store, people[key], 1, "approve")
    assert "approved on Mon 23 Nov 10:00 UTC, in force as v2" in said(
        command(sqlite_store, people["carol"], "approvals")
    )
    assert "Use `approvals`" in said(command(sqlite_store, people["carol"], "approvals frobnicate"))
    # Storage for the home view and the weekly digest.
    with sqlite_store.session() as s:
        assert [r.id for r in approvals.waiting_for(s, member_id=people["bob"].id or 0)] == [2]
        assert [r.id for r in approvals.waiting_for(s, member_id=people["sam"].id or 0)] == [2]
        assert approvals.waiting_for(s, member_id=people["carol"].id or 0) == []


def test_week_stats_count_in_sql(sqlite_store: Store, people: dict[str, Member]) -> None:
    last_week = NOW - timedelta(days=7)
    propose_leaddef(sqlite_store, people["carol"])  # #1, approved this week
    for key in ("bob", "sam", "dave"):
        decide(sqlite_store, people[key], 1, "approve", at=NOW + timedelta(hours=1))
    form = the_form(command(sqlite_store, people["olga"], "sla propose"))
    submit(sqlite_store, people["olga"], form, **sla_values(attempts="6"))  # #2, rejected
    decide(sqlite_store, people["bob"], 2, "reject", "no", at=NOW + timedelta(hours=2))
    propose_leaddef(sqlite_store, people["carol"], NEW_CRITERIA + "fit: Fits\n")  # #3, waiting
    with sqlite_store.session() as s:
        week = approvals.week_stats(s, start=NOW - timedelta(days=1), end=NOW + timedelta(days=6))
        assert week == approvals.WeekStats(proposed=3, waiting=1, approved=1, rejected=1)
        before = approvals.week_stats(s, start=last_week, end=NOW - timedelta(days=1))
        assert before == approvals.WeekStats()
        # At the end of a span that closes before the decisions, all three were waiting.
        early = approvals.week_stats(s, start=NOW, end=NOW + timedelta(minutes=30))
        assert early.waiting == 3 and early.approved == 0


# ---------------------------------------------------------------- approvers in chat


def test_only_admins_name_approvers_in_chat(sqlite_store: Store, people: dict[str, Member]) -> None:
    refused = said(command(sqlite_store, people["carol"], "approvals set --sales carol@x.com"))
    assert "Only admin members can name the approvers; you are a marketer" in refused
    bad = said(command(sqlite_store, people["eve"], "approvals set --sales nobody@x.com"))
    assert "No member with the email nobody@x.com" in bad
    assert "Not an email address: bob" in said(
        command(sqlite_store, people["eve"], "approvals set --sales bob")
    )
    assert "sign for both sides" in said(
        command(sqlite_store, people["eve"], "approvals set --marketing bob@x.com")
    )
    assert "Name the approvers" in said(command(sqlite_store, people["eve"], "approvals set"))
    done = said(
        command(
            sqlite_store,
            people["eve"],
            "approvals set --sales bob@x.com --marketing olga@x.com, dave@x.com",
        )
    )
    assert "Sales approvers: Bob Brown. Marketing approvers: Dave Davis, Olga Ortiz." in done
    # A request keeps the approvers it was sent to.
    propose_leaddef(sqlite_store, people["carol"])
    done = said(command(sqlite_store, people["eve"], "approvals set --sales sam@x.com"))
    assert "Pending approval #1 keeps the approvers it was sent to" in done
    with sqlite_store.session() as s:
        sent_to = {m.name for _, m in approvals.signoffs_of(s, request_id=1)}
        assert sent_to == {"Bob Brown", "Dave Davis", "Olga Ortiz"}


# ---------------------------------------------------------------- PostgreSQL


def test_two_last_approvals_at_once_bring_the_version_into_force_once(pg_store: Store) -> None:
    """The two last approvers decide at the same moment, on two sessions: the request row
    lock lets exactly one of them see that everyone has approved."""
    people = company(pg_store)
    propose_leaddef(pg_store, people["carol"])
    decide(pg_store, people["bob"], 1, "approve")
    forms = {
        key: the_form(
            run(pg_store, people[key], Kind.action, "approval.approve", args={"request": "1"})
        )
        for key in ("sam", "dave")
    }
    barrier = threading.Barrier(2)
    results: dict[str, list[Effect] | Exception] = {}

    def approve(key: str) -> None:
        barrier.wait()
        try:
            results[key] = submit(pg_store, people[key], forms[key], comment="yes")
        except Exception as error:  # recorded, so a failure says what went wrong
            results[key] = error

    threads = [threading.Thread(target=approve, args=(key,)) for key in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    replies = [said(r) for r in results.values() if isinstance(r, list)]
    assert len(replies) == 2, results
    assert sum("v2 is now in force" in r for r in replies) == 1, replies
    assert sum("You approved approval #1" in r for r in replies) == 1, replies
    with pg_store.session() as s:
        assert len(s.exec(select(LeadDefinition)).all()) == 2
        request = s.get(ApprovalRequest, 1)
        assert request is not None and (request.status, request.version) == ("approved", 2)
        decided = s.exec(select(ApprovalSignoff).where(col(ApprovalSignoff.decision) == "approved"))
        assert len(decided.all()) == 3
    done = [m.key for m in owed(pg_store) if ":done:" in m.key]
    assert len(done) == len(set(done)) == 3  # carol, bob and the first of the two


def test_racing_proposals_of_one_subject_store_one(pg_store: Store) -> None:
    people = company(pg_store)
    forms = {
        key: the_form(command(pg_store, people[key], "leaddef propose"))
        for key in ("carol", "olga")
    }
    barrier = threading.Barrier(2)
    results: list[str] = []

    def propose(key: str) -> None:
        barrier.wait()
        effects = submit(pg_store, people[key], forms[key], criteria=NEW_CRITERIA, note=key)
        results.append(said(effects))

    threads = [threading.Thread(target=propose, args=(key,)) for key in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum("is on its way" in r for r in results) == 1, results
    assert sum("One proposal at a time: approval #1" in r for r in results) == 1, results
    with pg_store.session() as s:
        assert len(s.exec(select(ApprovalRequest)).all()) == 1


def test_a_criterion_typed_without_a_key_gets_one_from_its_text(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    """People type "Uses a CRM", not "uses_crm: Uses a CRM": the key is made from the text,
    unique against the keys in force, given or used before, and within the key length; a
    line that repeats a criterion in force keeps that criterion's key."""
    form = the_form(command(sqlite_store, people["carol"], "leaddef propose"))
    current = initial(form, "criteria").splitlines()
    assert current[0] == "budget: Budget confirmed or likely"
    lines = [
        *current[1:-1],  # valid_contact retired
        "Budget confirmed or likely",  # as in force: keeps its key
        "Uses a CRM",
        "uses a crm!",
        "Valid, reachable contact details — checked by marketing before the handoff",
        "Über-ambitious growth plans",
        "???",
    ]
    effects = submit(
        sqlite_store, people["carol"], form, criteria="\n".join(lines), note="After the review"
    )
    assert "Approval #1 is on its way" in said(effects)
    with sqlite_store.session() as s:
        (request,) = s.exec(select(ApprovalRequest)).all()
        keys = [key for key, _ in request.payload["criteria"]]
    assert keys[: len(current) - 2] == [line.split(":")[0] for line in current[1:-1]]
    assert keys[len(current) - 2 :] == [
        "budget",
        "uses_a_crm",
        "uses_a_crm_2",
        "valid_reachable_contact_details",  # 32 characters at most
        "uber_ambitious_growth_plans",
        "criterion",
    ]
    assert all(len(key) <= 32 for key in keys)


def test_derived_keys_keep_to_the_limit_and_never_reuse_a_key() -> None:
    from handlers.proposals import derived_key, with_keys

    taken = {"uses_a_crm", "uses_a_crm_2"}
    assert derived_key("Uses a CRM", taken) == "uses_a_crm_3"
    long = "a" * 40
    assert derived_key(long, set()) == "a" * 32
    assert derived_key(long, {"a" * 32}) == "a" * 30 + "_2"
    assert with_keys(
        [(None, "In territory"), ("territory", "Sells in our region")],
        current=[("territory", "In territory")],
        used={"territory", "old_key"},
    ) == [("in_territory", "In territory"), ("territory", "Sells in our region")]
    assert with_keys(
        [(None, "  in  TERRITORY ")], current=[("territory", "In territory")], used={"territory"}
    ) == [("territory", "  in  TERRITORY ")]
