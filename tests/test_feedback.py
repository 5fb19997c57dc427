"""Field feedback through the router on a real SQLite file (and the figures on PostgreSQL
too): asking, bad input, answering and editing, who may do what, the one reminder in
working hours, the close at the deadline, and the summary computed in SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import Effect, FormErrors, Notify, Owed, Reply, ShowForm
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import Card, card_from_dict
from digests import feedback as loop
from handlers import feedback_cards
from storage import campaigns as stored_campaigns
from storage import definitions
from storage import feedback as records
from storage import members as stored_members
from storage.db import Store
from storage.models import (
    FeedbackAnswer,
    FeedbackRecipient,
    FeedbackRequest,
    Lead,
    Member,
    OutboxMessage,
)
from tests.support import act, owed

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 09:00 in London (GMT)
FRIDAY = "2026-11-27"
FRIDAY_17 = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # the end of Carol's Friday
MIDPOINT = MONDAY_9 + (FRIDAY_17 - MONDAY_9) / 2  # Wednesday 13:00 UTC
LONDON = Company("Europe/London")
router = build_router(LONDON)


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    return company_of(sqlite_store)


def company_of(store: Store) -> dict[str, Member]:
    """Carol (marketer), Alice and Bob (sales reps, London), Eve (a rep in Los Angeles),
    Dave (sales manager), Adam (admin); a Webinar campaign whose one lead Alice handled,
    and a Launch campaign without leads yet."""
    with store.session() as s:

        def member(name: str, **fields: Any) -> Member:
            return stored_members.upsert_member(
                s, now=MONDAY_9, email=f"{name.lower()}@x.com", name=name, **fields
            )

        people = {
            "carol": member("Carol", role="marketer", timezone="Europe/London", team="marketing"),
            "alice": member("Alice", timezone="Europe/London", team="sales"),
            "bob": member("Bob", timezone="Europe/London", team="sales"),
            "eve": member("Eve", timezone="America/Los_Angeles", team="west"),
            "dave": member("Dave", role="manager", timezone="Europe/London", team="sales"),
            "adam": member("Adam", role="admin", timezone="Europe/London"),
        }
        webinar = stored_campaigns.ensure_campaign(s, name="Webinar")
        stored_campaigns.ensure_campaign(s, name="Launch")
        definition, _ = definitions.current_definition(s)
        s.add(
            Lead(
                external_id="L1",
                name="Jordan Patel",
                campaign_id=webinar.id,
                owner_id=people["alice"].id,
                definition_id=definition.id or 0,
                state="accepted",
                created_at=MONDAY_9,
            )
        )
        return people


def values(**given: str) -> dict[str, list[str]]:
    return {name: [value] for name, value in given.items()}


def good_request(**changes: str) -> dict[str, list[str]]:
    fields = {
        "about": "campaign",
        "subject": "The webinar follow-up deck",
        "link": "https://example.com/deck",
        "campaign": "Webinar",
        "q1": "How useful is the deck with buyers?",
        "q1_kind": "rating",
        "q2": "Would you send it again?",
        "q2_kind": "choice",
        "q2_options": "Yes, No, Not sure",
        "q3": "What did buyers say about it?",
        "q3_kind": "text",
        "audience": "all",
        "deadline": FRIDAY,
    }
    fields.update(changes)
    return values(**fields)


def ask(
    store: Store, who: Member, form: dict[str, list[str]], at: datetime = MONDAY_9, n: str = "1"
) -> list[Effect]:
    return act(
        router,
        store,
        who,
        Kind.form,
        "feedback.request",
        at,
        values=form,
        request_id=f"form:ask-{n}",
        nonce=f"ask-{n}",
    )


def answer(
    store: Store, who: Member, given: dict[str, str], at: datetime = MONDAY_9, request: int = 1
) -> list[Effect]:
    return act(
        router,
        store,
        who,
        Kind.form,
        "feedback.answer",
        at,
        values=values(**given),
        request_id=f"form:answer-{who.id}-{at.isoformat()}-{sorted(given.items())}",
        request=str(request),
        nonce="n",
    )


def typed(store: Store, who: Member, text: str, at: datetime = MONDAY_9) -> list[Effect]:
    """`who` types `feedback <text>` (Slack `/feedback <text>`, Teams `feedback <text>`)."""
    interaction = Interaction(Kind.command, "feedback", who, Where("test"), text=text)
    return router.dispatch(store, interaction, at)


def replies(effects: list[Effect]) -> list[Card]:
    return [e.card for e in effects if isinstance(e, Reply)]


def count(store: Store, model: type) -> int:
    with store.session() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


# ---------------------------------------------------------------- asking


def test_a_rep_is_refused_privately_and_told_why(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (refusal,) = act(router, sqlite_store, people["alice"], Kind.command, "feedback", MONDAY_9)
    assert isinstance(refusal, Reply)
    assert "Only marketer, admin members can ask the field for feedback" in refusal.card.text
    assert "you are a rep" in refusal.card.text
    # Once something waits for her answer, the refusal offers it.
    ask(sqlite_store, people["carol"], good_request())
    (refusal,) = act(router, sqlite_store, people["alice"], Kind.command, "feedback", MONDAY_9)
    assert isinstance(refusal, Reply)
    assert "1 feedback request is waiting for your answer" in refusal.card.text
    assert [(b.action, b.value) for b in refusal.card.buttons] == [("feedback.answer", "request=1")]
    # A forged submit of the request form by a rep is refused too, and stores nothing.
    (again,) = ask(sqlite_store, people["bob"], good_request(), n="forged")
    assert isinstance(again, Reply) and "you are a rep" in again.card.text
    assert count(sqlite_store, FeedbackRequest) == 1


def test_the_form_offers_campaigns_teams_and_a_week_by_default(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (shown,) = act(router, sqlite_store, people["carol"], Kind.command, "feedback", MONDAY_9)
    assert isinstance(shown, ShowForm)
    inputs = {i.name: i for i in shown.form.inputs}
    assert [o.label for o in inputs["campaign"].options] == ["Launch", "Webinar"]
    assert [o.value for o in inputs["audience"].options] == [
        "all",
        "team:marketing",
        "team:sales",
        "team:west",
        "campaign",
    ]
    assert inputs["audience"].options[0].label == "All reps (3)"
    assert inputs["audience"].options[3].label == "Team west (1)"
    assert inputs["deadline"].kind == "date" and inputs["deadline"].initial == ("2026-11-30",)
    assert inputs["q1"].required and not inputs["q2"].required
    assert inputs["subject"].max_length == 200 and inputs["q1"].max_length == 300
    assert shown.form.state["nonce"]


def test_a_request_goes_to_each_rep_of_the_audience_once(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    effects = ask(sqlite_store, people["carol"], good_request())
    (sent,) = replies(effects)
    assert sent.title == "Feedback request #1 is out"
    assert "It went to 3 people (all reps)" in sent.text
    assert "until Fri 27 Nov 17:00 GMT" in sent.text
    assert [b.action for b in sent.buttons] == ["feedback.summary"]
    assert Owed(3) in effects
    rows = owed(sqlite_store)
    reps = [people[n].id for n in ("alice", "bob", "eve")]
    assert [r.key for r in rows] == [f"feedback:1:ask:{m}" for m in reps]
    assert [r.member_id for r in rows] == reps
    eve_card = card_from_dict(rows[2].card)
    assert eve_card.title == "Carol asks for your feedback: The webinar follow-up deck"
    assert "open until Fri 27 Nov 09:00 PST" in eve_card.text  # her own time zone
    assert ("Question 2", "Would you send it again? (one of: Yes / No / Not sure)") in [
        (f.label, f.value) for f in eve_card.fields
    ]
    assert [(b.label, b.action, b.value) for b in eve_card.buttons] == [
        ("Answer", "feedback.answer", "request=1")
    ]
    # Eve's card waits for her working morning; the London reps get theirs at once.
    assert rows[2].not_before == datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    assert rows[0].not_before == MONDAY_9
    with sqlite_store.session() as s:
        request = records.get_request(s, request_id=1)
        assert request is not None and request.remind_at == MIDPOINT
        assert request.deadline == FRIDAY_17
        assert records.recipient_ids(s, request_id=1) == reps  # the snapshot
    # The same form submitted twice (a retry, a double click) asks once.
    assert ask(sqlite_store, people["carol"], good_request()) == []
    assert count(sqlite_store, FeedbackRequest) == 1 and len(owed(sqlite_store)) == 3


@pytest.mark.parametrize(
    "audience,who",
    [
        ("team:sales", ["alice", "bob", "dave"]),
        ("team:west", ["eve"]),
        ("campaign", ["alice"]),  # the owners of the Webinar's leads
    ],
)
def test_audiences(
    sqlite_store: Store, people: dict[str, Member], audience: str, who: list[str]
) -> None:
    ask(sqlite_store, people["carol"], good_request(audience=audience))
    with sqlite_store.session() as s:
        assert records.recipient_ids(s, request_id=1) == [people[n].id for n in who]


LONG_OPTION = "x" * 76


@pytest.mark.parametrize(
    "changes,field,says",
    [
        ({"q1": "", "q2": "", "q3": ""}, "q1", "Ask at least one question"),
        ({"q1": " ", "q2": "", "q3": "", "q2_options": ""}, "q1", "Ask at least one question"),
        ({"deadline": "2026-11-20"}, "deadline", "2026-11-20 is in the past"),
        ({"deadline": "2027-01-23"}, "deadline", "60 days at most"),
        ({"deadline": "next friday"}, "deadline", "as a date, e.g. 2026-12-04"),
        ({"campaign": "Spring Gala"}, "campaign", "I don't know a campaign called “Spring Gala”"),
        ({"campaign": ""}, "campaign", "Pick the campaign this is about"),
        (
            {"about": "message", "campaign": "", "audience": "campaign"},
            "campaign",
            "Pick the campaign whose reps should answer",
        ),
        ({"q2_options": ",".join(f"o{i}" for i in range(11))}, "q2_options", "there are 11"),
        ({"q2_options": "Only one"}, "q2_options", "there is 1"),
        ({"q2_options": f"Yes, {LONG_OPTION}"}, "q2_options", "longer than 75 characters"),
        ({"q2_options": "Yes, No, yes"}, "q2_options", "“yes” is listed twice"),
        ({"q1_options": "a, b"}, "q1_options", "only for multiple choice"),
        ({"q3": "", "q3_kind": "choice", "q3_options": "a, b"}, "q3_options", "Write question 3"),
        ({"q1_kind": "essay"}, "q1_kind", "Pick free text"),
        ({"subject": "s" * 201}, "subject", "under 200 characters"),
        ({"subject": ""}, "subject", "Say what you want feedback on"),
        ({"q1": "q" * 301}, "q1", "under 300 characters"),
        ({"link": "javascript:alert(1)"}, "link", "http:// or https://"),
        ({"link": "ftp://example.com/deck"}, "link", "http:// or https://"),
        ({"about": "asset", "link": ""}, "link", "An asset needs its link"),
        ({"about": "poster"}, "about", "Pick what it is about"),
        ({"audience": "team:nobody"}, "audience", "Pick who to ask"),
        ({"q1": "Why are these lazy reps not using the deck?"}, "q1", "“lazy reps” reads as"),
        ({"subject": "The deck THAT NOBODY EVER READS"}, "subject", "shouting"),
        ({"campaign": "Launch", "audience": "campaign"}, "audience", "Nobody has handled leads"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    sqlite_store: Store,
    people: dict[str, Member],
    changes: dict[str, str],
    field: str,
    says: str,
) -> None:
    (refused,) = ask(sqlite_store, people["carol"], good_request(**changes))
    assert isinstance(refused, FormErrors), refused
    assert field in refused.errors, refused.errors
    assert says in refused.errors[field], refused.errors
    assert count(sqlite_store, FeedbackRequest) == 0
    assert count(sqlite_store, FeedbackRecipient) == 0
    assert owed(sqlite_store) == []


def test_without_campaigns_the_form_has_no_campaign_input(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        carol = stored_members.upsert_member(
            s, now=MONDAY_9, email="c@x.com", name="C", role="marketer"
        )
        stored_members.upsert_member(s, now=MONDAY_9, email="a@x.com", name="A")
    (shown,) = act(router, sqlite_store, carol, Kind.command, "feedback", MONDAY_9)
    assert isinstance(shown, ShowForm)
    assert "campaign" not in [i.name for i in shown.form.inputs]
    # So a refusal names an input the form has (Slack shows errors under existing blocks).
    (refused,) = ask(sqlite_store, carol, good_request(campaign=""))
    assert isinstance(refused, FormErrors)
    assert "No campaigns are known yet" in refused.errors["about"]
    (refused,) = ask(
        sqlite_store, carol, good_request(about="message", campaign="", audience="campaign")
    )
    assert isinstance(refused, FormErrors)
    assert "pick all reps or a team" in refused.errors["audience"]
    assert ask(sqlite_store, carol, good_request(about="message", campaign="")) != []
    assert count(sqlite_store, FeedbackRequest) == 1


def test_every_problem_is_named_at_once(sqlite_store: Store, people: dict[str, Member]) -> None:
    (refused,) = ask(
        sqlite_store,
        people["carol"],
        good_request(subject="", link="nope", deadline="2026-11-01", q2_options="one"),
    )
    assert isinstance(refused, FormErrors)
    assert set(refused.errors) == {"subject", "link", "deadline", "q2_options"}


def test_today_is_fine_until_the_working_day_ends(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    today = good_request(deadline="2026-11-23")
    evening = MONDAY_9 + timedelta(hours=8, minutes=1)  # 17:01 in London
    (refused,) = ask(sqlite_store, people["carol"], today, at=evening)
    assert isinstance(refused, FormErrors)
    assert "Today's working hours ended at Mon 23 Nov 17:00 GMT" in refused.errors["deadline"]
    assert count(sqlite_store, FeedbackRequest) == 0
    ask(sqlite_store, people["carol"], today, n="2")
    with sqlite_store.session() as s:
        request = records.get_request(s, request_id=1)
        assert request is not None and request.deadline == MONDAY_9 + timedelta(hours=8)


def test_a_typed_campaign_name_is_found_whatever_its_case(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    ask(sqlite_store, people["carol"], good_request(campaign="  webinar "))
    with sqlite_store.session() as s:
        request = records.get_request(s, request_id=1)
        webinar = records.campaign_named(s, name="Webinar")
        assert request is not None and webinar is not None
        assert request.campaign_id == webinar.id


def test_an_empty_team_is_refused_before_anything_is_stored(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (refused,) = ask(sqlite_store, people["carol"], good_request(audience="team:marketing"))
    assert isinstance(refused, FormErrors)
    assert "Nobody but you is in team marketing" in refused.errors["audience"]
    assert count(sqlite_store, FeedbackRequest) == 0


# ---------------------------------------------------------------- answering


def test_answers_are_pre_filled_and_edited_in_place(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    ask(sqlite_store, people["carol"], good_request())
    alice = people["alice"]
    (shown,) = act(
        router, sqlite_store, alice, Kind.action, "feedback.answer", MONDAY_9, request="1"
    )
    assert isinstance(shown, ShowForm)
    a1, a2, a3 = shown.form.inputs
    assert (a1.name, a1.kind, [o.value for o in a1.options]) == (
        "a1",
        "select",
        ["1", "2", "3", "4", "5"],
    )
    assert (a2.kind, [o.value for o in a2.options]) == ("select", ["Yes", "No", "Not sure"])
    assert (a3.kind, a3.initial) == ("multiline", ())
    before = len(owed(sqlite_store))

    (saved,) = replies(answer(sqlite_store, alice, {"a1": "4", "a2": "Yes", "a3": "Liked it"}))
    assert "your answers are saved" in saved.text
    (shown,) = act(
        router, sqlite_store, alice, Kind.action, "feedback.answer", MONDAY_9, request="1"
    )
    assert isinstance(shown, ShowForm)
    assert [i.initial for i in shown.form.inputs] == [("4",), ("Yes",), ("Liked it",)]
    later = MONDAY_9 + timedelta(days=1)
    (updated,) = replies(
        answer(
            sqlite_store,
            alice,
            {"a1": "2", "a2": "not sure", "a3": "On reflection: long"},
            at=later,
        )
    )
    assert "Your answers are updated" in updated.text
    with sqlite_store.session() as s:
        rows = s.exec(select(FeedbackAnswer).order_by(col(FeedbackAnswer.question_id))).all()
        assert [(r.value, r.answered_at, r.updated_at) for r in rows] == [
            ("2", MONDAY_9, later),
            ("Not sure", MONDAY_9, later),  # the requester's spelling of the choice
            ("On reflection: long", MONDAY_9, later),
        ]
    # Non-blocking and quiet: the requester gets no message per answer.
    assert len(owed(sqlite_store)) == before
    assert owed(sqlite_store, people["carol"].id) == []


@pytest.mark.parametrize(
    "given,field,says",
    [
        ({"a1": "7", "a2": "Yes", "a3": "ok"}, "a1", "rating from 1 to 5"),
        ({"a1": "", "a2": "Yes", "a3": "ok"}, "a1", "rating from 1 to 5"),
        ({"a1": "3", "a2": "Perhaps", "a3": "ok"}, "a2", "Pick one of: Yes, No, Not sure"),
        ({"a1": "3", "a2": "Yes", "a3": "  "}, "a3", "Please write an answer"),
        ({"a1": "3", "a2": "Yes", "a3": "z" * 2001}, "a3", "under 2000 characters"),
        ({"a1": "3", "a2": "Yes", "a3": "Marketing never asks us first"}, "a3", "reads as blame"),
    ],
)
def test_bad_answers_are_refused_naming_the_question(
    sqlite_store: Store,
    people: dict[str, Member],
    given: dict[str, str],
    field: str,
    says: str,
) -> None:
    ask(sqlite_store, people["carol"], good_request())
    (refused,) = answer(sqlite_store, people["alice"], given)
    assert isinstance(refused, FormErrors) and says in refused.errors[field], refused
    assert count(sqlite_store, FeedbackAnswer) == 0


def test_only_the_people_asked_may_answer(sqlite_store: Store, people: dict[str, Member]) -> None:
    ask(sqlite_store, people["carol"], good_request())  # all reps: not Dave, a manager
    dave = people["dave"]
    (refusal,) = act(
        router, sqlite_store, dave, Kind.action, "feedback.answer", MONDAY_9, request="1"
    )
    assert isinstance(refusal, Reply)
    assert "you were not among them; only they can answer. Carol asked for it." in refusal.card.text
    (forged,) = answer(sqlite_store, dave, {"a1": "5", "a2": "Yes", "a3": "Great"})
    assert isinstance(forged, Reply) and "not among them" in forged.card.text
    (unknown,) = act(
        router, sqlite_store, dave, Kind.action, "feedback.answer", MONDAY_9, request="42"
    )
    assert isinstance(unknown, Reply) and "can't find feedback request #42" in unknown.card.text
    assert count(sqlite_store, FeedbackAnswer) == 0


# ---------------------------------------------------------------- the requester's side


def test_list_and_live_summary_are_private_to_the_requester(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    carol = people["carol"]
    (empty,) = replies(typed(sqlite_store, carol, "list", MONDAY_9))
    assert "You have not asked for feedback yet" in empty.text
    ask(sqlite_store, carol, good_request())
    answer(sqlite_store, people["alice"], {"a1": "5", "a2": "Yes", "a3": "Buyers loved page 2"})

    def command(who: Member, text: str) -> Card:
        (reply,) = typed(sqlite_store, who, text)
        assert isinstance(reply, Reply)
        return reply.card

    listed = command(carol, "list")
    assert [(f.label, f.value) for f in listed.fields] == [
        ("#1 The webinar follow-up deck", "1 of 3 answered · open until Fri 27 Nov 17:00 GMT")
    ]
    live = command(carol, "1")
    assert live.title == "Answers so far #1: The webinar follow-up deck"
    assert live.text == "1 of 3 answered (33%). Open until Fri 27 Nov 17:00 GMT."
    assert [f.value for f in live.fields][1:] == [
        "1: 0 · 2: 0 · 3: 0 · 4: 0 · 5: 1 · mean 5.0 of 5 (1 answer)",
        "Yes: 1 · No: 0 · Not sure: 0 (1 answer)",
        "“Buyers loved page 2”",
    ]
    assert "Alice" not in str(live)  # quotes are unattributed
    assert [b.action for b in live.buttons] == ["feedback.close"]
    assert command(carol, "#1").text == live.text
    assert (
        "Only Carol, who asked for this feedback, or an admin" in command(people["alice"], "1").text
    )
    assert command(people["adam"], "1").text == live.text
    assert "can't find feedback request #9" in command(carol, "9").text
    assert "feedback list to see your requests" in command(carol, "frobnicate").text


def test_closing_early_sends_the_summary_once_and_answers_stop(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    carol, alice = people["carol"], people["alice"]
    ask(sqlite_store, carol, good_request())
    answer(sqlite_store, alice, {"a1": "4", "a2": "No", "a3": "Too long"})
    tuesday = MONDAY_9 + timedelta(days=1)
    (refused,) = typed(sqlite_store, alice, "close 1", tuesday)
    assert isinstance(refused, Reply) and "Only Carol" in refused.card.text
    effects = typed(sqlite_store, carol, "close 1", tuesday)
    summary, done = effects
    assert isinstance(summary, Notify) and summary.member_id == carol.id  # a DM, at once
    assert summary.key == "feedback:1:summary"
    assert summary.card.title == "Feedback summary #1: The webinar follow-up deck"
    assert summary.card.text == "1 of 3 answered (33%). Closed Tue 24 Nov 09:00 GMT."
    assert summary.card.buttons == ()
    assert isinstance(done, Reply) and "Request #1 is closed" in done.card.text
    (again,) = typed(sqlite_store, carol, "close 1", tuesday)
    assert isinstance(again, Reply) and "closed on Tue 24 Nov 09:00 GMT already" in again.card.text
    # After the close, answers are refused politely, and nothing is stored.
    (closed,) = answer(sqlite_store, people["bob"], {"a1": "3", "a2": "Yes", "a3": "Late"}, tuesday)
    assert isinstance(closed, Reply)
    assert "This request closed on Tue 24 Nov 09:00 GMT" in closed.card.text
    (closed,) = act(
        router, sqlite_store, alice, Kind.action, "feedback.answer", tuesday, request="1"
    )
    assert isinstance(closed, Reply) and "answers are no longer taken" in closed.card.text
    assert count(sqlite_store, FeedbackAnswer) == 3
    # The deadline pass later finds nothing to do: closed once.
    assert loop.tick(sqlite_store, now=FRIDAY_17, company=LONDON).messages == 0


def test_an_admin_may_close_and_the_requester_hears(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    ask(sqlite_store, people["carol"], good_request())
    effects = act(
        router, sqlite_store, people["adam"], Kind.action, "feedback.close", MONDAY_9, request="1"
    )
    (reply,) = replies(effects)
    assert "the summary went to Carol" in reply.text
    (summary,) = owed(sqlite_store, people["carol"].id)
    assert summary.key == "feedback:1:summary"
    assert card_from_dict(summary.card).text == "0 of 3 answered (0%). Closed Mon 23 Nov 09:00 GMT."
    with sqlite_store.session() as s:
        request = records.get_request(s, request_id=1)
        assert request is not None and request.closed_by == "admin"


# ---------------------------------------------------------------- the scheduled pass


def test_one_reminder_only_to_those_who_have_not_answered_in_their_hours(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    ask(sqlite_store, people["carol"], good_request())
    answer(sqlite_store, people["alice"], {"a1": "4", "a2": "Yes", "a3": "Fine"})
    before = {m.key for m in owed(sqlite_store)}

    def reminders() -> list[OutboxMessage]:
        return [m for m in owed(sqlite_store) if m.key not in before]

    early = loop.tick(sqlite_store, now=MIDPOINT - timedelta(minutes=1), company=LONDON)
    assert (early.looked_at, early.messages) == (0, 0)
    report = loop.tick(sqlite_store, now=MIDPOINT, company=LONDON)
    assert report.looked_at == 1
    bob, eve = people["bob"].id, people["eve"].id
    assert report.keys == [f"feedback:1:remind:{bob}", f"feedback:1:remind:{eve}"]
    by_member = {m.member_id: m for m in reminders()}
    assert set(by_member) == {bob, eve}  # not Alice, who answered
    assert by_member[bob].not_before == MIDPOINT  # 13:00 in London: at once
    # 05:00 in Los Angeles: held for her morning, 09:00 PST = 17:00 UTC, before the deadline.
    assert by_member[eve].not_before == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    card = card_from_dict(by_member[eve].card)
    assert card.title == "Reminder: your feedback on The webinar follow-up deck"
    assert "Carol asked for your view on the campaign Webinar" in card.text
    assert [b.action for b in card.buttons] == ["feedback.answer"]
    # Exactly once: later passes before the deadline owe nothing more.
    for hours in (0, 1, 24):
        later = loop.tick(sqlite_store, now=MIDPOINT + timedelta(hours=hours), company=LONDON)
        assert later.messages == 0
    assert len(reminders()) == 2
    with sqlite_store.session() as s:
        reminded = s.exec(
            select(FeedbackRecipient.member_id).where(
                col(FeedbackRecipient.reminded_at).is_not(None)
            )
        ).all()
        assert sorted(reminded) == [bob, eve]


def test_no_reminder_that_would_arrive_after_the_deadline(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    # Due the same day: the midpoint is 13:00 UTC, 05:00 for Eve, whose morning (17:00 UTC)
    # is the deadline itself; Bob in London is reminded.
    ask(sqlite_store, people["carol"], good_request(deadline="2026-11-23"))
    report = loop.tick(sqlite_store, now=MONDAY_9 + timedelta(hours=4), company=LONDON)
    assert report.keys == [
        f"feedback:1:remind:{people['alice'].id}",
        f"feedback:1:remind:{people['bob'].id}",
    ]


def test_the_deadline_closes_once_and_the_requester_gets_the_summary(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    carol = people["carol"]
    ask(sqlite_store, carol, good_request())
    answer(sqlite_store, people["alice"], {"a1": "4", "a2": "Yes", "a3": "Fine"})
    with sqlite_store.session() as s:
        assert [
            w.request_id
            for w in records.waiting_for(s, member_id=people["bob"].id or 0, now=MONDAY_9)
        ] == [1]
        assert records.waiting_for(s, member_id=people["alice"].id or 0, now=MONDAY_9) == []
    # A pass just before the deadline still reminds Bob; Eve's morning would be too late.
    last_minute = loop.tick(sqlite_store, now=FRIDAY_17 - timedelta(minutes=1), company=LONDON)
    assert last_minute.keys == [f"feedback:1:remind:{people['bob'].id}"]
    # Late on Friday evening (after her hours) the pass closes it; the summary waits for
    # Carol's Monday morning.
    evening = FRIDAY_17 + timedelta(hours=3)
    report = loop.tick(sqlite_store, now=evening, company=LONDON)
    assert report.keys == ["feedback:1:summary"]
    (summary,) = owed(sqlite_store, carol.id)
    assert summary.not_before == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    card = card_from_dict(summary.card)
    assert card.title == "Feedback summary #1: The webinar follow-up deck"
    assert card.text == "1 of 3 answered (33%). Closed Fri 27 Nov 17:00 GMT."
    assert loop.tick(sqlite_store, now=evening + timedelta(days=1), company=LONDON).looked_at == 0
    with sqlite_store.session() as s:
        request = records.get_request(s, request_id=1)
        assert request is not None
        assert (request.closed_at, request.closed_by) == (FRIDAY_17, "deadline")
        assert records.waiting_for(s, member_id=people["bob"].id or 0, now=MONDAY_9) == []
    (late,) = answer(sqlite_store, people["bob"], {"a1": "3", "a2": "Yes", "a3": "x"}, evening)
    assert isinstance(late, Reply) and "closed on Fri 27 Nov 17:00 GMT" in late.card.text


def test_answering_after_the_deadline_is_refused_even_before_the_pass(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    ask(sqlite_store, people["carol"], good_request())
    (late,) = answer(sqlite_store, people["bob"], {"a1": "3", "a2": "Yes", "a3": "x"}, FRIDAY_17)
    assert isinstance(late, Reply) and "closed on Fri 27 Nov 17:00 GMT" in late.card.text
    (live,) = replies(typed(sqlite_store, people["carol"], "1", FRIDAY_17))
    assert live.text == "0 of 3 answered (0%). Closed Fri 27 Nov 17:00 GMT."
    assert live.buttons == ()
    (listed,) = replies(typed(sqlite_store, people["carol"], "list", FRIDAY_17))
    assert listed.fields[0].value == "0 of 3 answered · closed Fri 27 Nov 17:00 GMT"


# ---------------------------------------------------------------- the figures, in SQL


def known_answers(store: Store) -> dict[str, Member]:
    """Four people asked; three answer. Ratings 5, 4, 4; choices Yes, Yes, No; two quotes."""
    people = company_of(store)
    with store.session() as s:
        request = records.create_request(
            s,
            requester_id=people["carol"].id or 0,
            about="message",
            subject="The new talk track",
            link=None,
            campaign_id=None,
            audience="all",
            deadline=FRIDAY_17,
            remind_at=MIDPOINT,
            questions=[
                records.NewQuestion("rating", "How well does it land?"),
                records.NewQuestion("choice", "Use it again?", ("Yes", "No", "Maybe")),
                records.NewQuestion("text", "What did buyers say?"),
            ],
            recipients=[people[n].id or 0 for n in ("alice", "bob", "eve", "dave")],
            now=MONDAY_9,
        )
        q1, q2, q3 = records.questions_of(s, request_id=request.id or 0)
        given = [
            ("alice", "5", "Yes", "They asked for pricing"),
            ("bob", "3", "Yes", None),
            ("eve", "4", "No", "Too long"),
        ]
        for minutes, (name, rating, choice, quote) in enumerate(given):
            at = MONDAY_9 + timedelta(minutes=minutes)
            for question, value in ((q1, rating), (q2, choice), (q3, quote)):
                if value is not None:
                    records.save_answer(
                        s,
                        request_id=request.id or 0,
                        question_id=question.id or 0,
                        member_id=people[name].id or 0,
                        value=value,
                        now=at,
                    )
        # Bob changes his rating from 3 to 4: still one answer of his.
        records.save_answer(
            s,
            request_id=request.id or 0,
            question_id=q1.id or 0,
            member_id=people["bob"].id or 0,
            value="4",
            now=MONDAY_9 + timedelta(hours=1),
        )
    return people


def test_the_summary_figures_by_hand(any_store: Store) -> None:
    people = known_answers(any_store)
    with any_store.session() as s:
        summary = records.summary(s, request_id=1)
    assert summary is not None
    assert (summary.asked, summary.responded, summary.response_rate) == (4, 3, 0.75)
    rating, choice, text = summary.questions
    assert rating.answered == 3
    assert rating.ratings == ((1, 0), (2, 0), (3, 0), (4, 2), (5, 1))
    assert rating.mean == pytest.approx(13 / 3)
    assert choice.answered == 3 and choice.choices == (("Yes", 2), ("No", 1), ("Maybe", 0))
    assert text.answered == 2 and text.quotes == ("They asked for pricing", "Too long")
    assert (rating.quotes, choice.mean, text.ratings) == ((), None, ())
    card = feedback_cards.summary_card(summary, "a message", "Europe/London")
    assert card.text == "3 of 4 answered (75%). Open until Fri 27 Nov 17:00 GMT."
    assert [f.value for f in card.fields] == [
        "1: 0 · 2: 0 · 3: 0 · 4: 2 · 5: 1 · mean 4.3 of 5 (3 answers)",
        "Yes: 2 · No: 1 · Maybe: 0 (3 answers)",
        "“They asked for pricing”\n“Too long”",
    ]
    with any_store.session() as s:
        (line,) = records.requests_of(s, requester_id=people["carol"].id or 0)
        assert (line.asked, line.responded) == (4, 3)
        waiting = records.waiting_for(s, member_id=people["bob"].id or 0, now=MONDAY_9)
        assert [(w.request_id, w.questions, w.answered) for w in waiting] == [(1, 3, 2)]
        assert (
            records.waiting_for(s, member_id=people["dave"].id or 0, now=MONDAY_9)[0].answered == 0
        )
        assert records.waiting_for(s, member_id=people["alice"].id or 0, now=MONDAY_9) == []
        assert records.waiting_for(s, member_id=people["dave"].id or 0, now=FRIDAY_17) == []
        week = records.week_stats(s, start=MONDAY_9, end=MONDAY_9 + timedelta(days=7))
        assert (week.sent, week.asked, week.responded, week.closed) == (1, 4, 3, 0)
        assert week.response_rate == 0.75
        assert records.week_stats(s, start=FRIDAY_17, end=FRIDAY_17 + timedelta(days=7)).sent == 0
    loop.tick(any_store, now=FRIDAY_17, company=LONDON)
    with any_store.session() as s:
        closed_week = records.week_stats(s, start=MONDAY_9, end=MONDAY_9 + timedelta(days=7))
        assert closed_week.closed == 1
        summary = records.summary(s, request_id=1)
        assert summary is not None and summary.closed_at == FRIDAY_17


def test_several_instances_claim_different_due_requests(pg_store: Store) -> None:
    """FOR UPDATE SKIP LOCKED: a second pass skips what a first one holds."""
    known_answers(pg_store)
    with pg_store.session() as s:
        people = {m.name: m for m in stored_members.all_members(s)}
        records.create_request(
            s,
            requester_id=people["Carol"].id or 0,
            about="message",
            subject="Second",
            link=None,
            campaign_id=None,
            audience="all",
            deadline=FRIDAY_17,
            remind_at=MIDPOINT,
            questions=[records.NewQuestion("text", "Thoughts?")],
            recipients=[people["Bob"].id or 0],
            now=MONDAY_9,
        )
    with pg_store.session() as first, pg_store.session() as second:
        held = records.due_requests(first, now=FRIDAY_17, limit=1)
        other = records.due_requests(second, now=FRIDAY_17, limit=5)
        assert [r.id for r in held] == [1] and [r.id for r in other] == [2]
