"""Field feedback end to end in Teams: `feedback` typed in the personal chat, the form card,
its submit activities (refused ones explained), DM cards through the connector stand-in,
a rep's Answer and its edit, and `feedback close` with the summary in the requester's chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from storage import campaigns as stored_campaigns
from storage import feedback as records
from storage import members as stored_members
from tests.support import LiveServer, eventually, teams_settings
from tests.teams_standin import Call, Person, TeamsStandIn, connector_with
from tests.test_teams import ALICE, BOB, CAROL, DAVE, Teams, card_text, titles


@pytest.fixture
async def standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with((ALICE, CAROL, BOB, DAVE))
    yield connector
    await connector.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = teams_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
    )
    live = await LiveServer(settings).start()
    with live.store.session() as s:
        stored_members.upsert_member(
            s,
            now=datetime.now(UTC),
            email=CAROL.email,
            name=CAROL.name,
            role="marketer",
            timezone="Europe/London",
        )
        stored_campaigns.ensure_campaign(s, name="Webinar")
    yield live
    await live.stop()


@pytest.fixture
async def chat(server: LiveServer, standin: TeamsStandIn) -> AsyncIterator[Teams]:
    async with aiohttp.ClientSession() as http:
        yield Teams(server, standin, http)


def inputs(form: Call) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in form.card["body"] if "id" in e}


def filled(form: Call, given: dict[str, str]) -> dict[str, str]:
    """What Teams submits: every input's value, as typed or as the card pre-filled it."""
    return {name: given.get(name, str(e.get("value", ""))) for name, e in inputs(form).items()}


def in_three_days() -> str:
    return (datetime.now(ZoneInfo("Europe/London")).date() + timedelta(days=3)).isoformat()


def asks(chat: Teams, person: Person) -> list[Call]:
    return [
        c
        for c in chat.standin.of("send", person.conversation)
        if "asks for your feedback" in card_text(c.card)
    ]


async def test_the_feedback_loop_in_teams(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    for person in (CAROL, ALICE, BOB):
        await chat.meet(person)

    # Carol types `feedback` in her chat with Liaison: a form card.
    form = await chat.reply_to(await chat.say(CAROL, "feedback"))
    fields = inputs(form)
    assert fields["deadline"]["type"] == "Input.Date"
    assert [c["title"] for c in fields["campaign"]["choices"]] == ["Webinar"]
    assert fields["q1_kind"]["value"] == "text" and fields["q1"]["maxLength"] == 300
    webinar = fields["campaign"]["choices"][0]["value"]
    good = {
        "about": "campaign",
        "subject": "The webinar follow-up deck",
        "link": "https://example.com/deck",
        "campaign": webinar,
        "q1": "How useful is the deck with buyers?",
        "q1_kind": "rating",
        "q2": "Would you send it again?",
        "q2_kind": "choice",
        "q2_options": "Yes, No, Not sure",
        "q3": "What did buyers say about it?",
        "audience": "all",
        "deadline": in_three_days(),
    }

    # Bad input is explained privately, field by field; the form stays usable.
    refused = await chat.submit(CAROL, form, filled(form, dict(good, campaign="Spring Gala")))
    text = card_text((await chat.reply_to(refused)).card)
    assert "Please fix: Campaign (needed for a campaign, or to ask its reps) — " in text
    assert "I don't know a campaign called “Spring Gala”. Known campaigns: Webinar." in text
    refused = await chat.submit(CAROL, form, filled(form, dict(good, q1="", q2="", q3="")))
    assert "Question 1 — Ask at least one question." in card_text(
        (await chat.reply_to(refused)).card
    )
    refused = await chat.submit(CAROL, form, filled(form, dict(good, deadline="2020-01-06")))
    assert "2020-01-06 is in the past" in card_text((await chat.reply_to(refused)).card)
    twelve = ", ".join(f"c{n}" for n in range(12))
    refused = await chat.submit(CAROL, form, filled(form, dict(good, q2_options=twelve)))
    assert "there are 12" in card_text((await chat.reply_to(refused)).card)
    with server.store.session() as s:
        assert records.requests_of(s, requester_id=1) == []

    # The good submit: a DM card to each rep, the form card replaced by "Saved".
    sent = await chat.submit(CAROL, form, filled(form, good))
    confirmation = card_text((await chat.reply_to(sent)).card)
    assert "It went to 2 people (all reps)" in confirmation
    await server.settle()
    (alice_card,) = await eventually(lambda: asks(chat, ALICE))
    (bob_card,) = await eventually(lambda: asks(chat, BOB))
    assert titles(alice_card.card) == ["Answer"]
    assert "Carol Chen asks for your feedback: The webinar follow-up deck" in card_text(
        alice_card.card
    )
    assert "How useful is the deck with buyers? (a rating from 1 to 5)" in card_text(bob_card.card)
    assert "Saved" in card_text(chat.answered(sent))

    # Alice answers, then changes her mind: the second form comes pre-filled.
    answer_form = await chat.reply_to(await chat.press(ALICE, alice_card, "Answer"))
    assert [c["value"] for c in inputs(answer_form)["a2"]["choices"]] == ["Yes", "No", "Not sure"]
    given = {"a1": "5", "a2": "No", "a3": "Price objections, every time"}
    said = await chat.submit(ALICE, answer_form, given)
    assert "your answers are saved" in card_text((await chat.reply_to(said)).card)
    edit_form = await chat.reply_to(await chat.press(ALICE, alice_card, "Answer"))
    assert {n: e.get("value") for n, e in inputs(edit_form).items()} == given
    said = await chat.submit(ALICE, edit_form, filled(edit_form, {"a2": "Not sure"}))
    assert "Your answers are updated" in card_text((await chat.reply_to(said)).card)

    # Dave meets the bot after the request went out: he was not asked, so he cannot answer.
    await chat.meet(DAVE)
    data = next(a["data"] for a in alice_card.card["actions"] if a["title"] == "Answer")
    outsider = chat.activity("card_submit", DAVE, value=data)
    await chat.post(outsider)
    assert "you were not among them" in card_text((await chat.reply_to(outsider)).card)

    # `feedback list`, then `feedback close 1`: the summary arrives in Carol's chat.
    listed = await chat.reply_to(await chat.say(CAROL, "feedback list"))
    assert "1 of 2 answered" in card_text(listed.card)
    closing = await chat.say(CAROL, "feedback close 1")
    assert "Request #1 is closed" in card_text((await chat.reply_to(closing)).card)

    def summaries() -> list[Call]:
        return [
            c
            for c in standin.of("send", CAROL.conversation)
            if "Feedback summary #1" in card_text(c.card)
        ]

    (summary,) = await eventually(summaries)
    body = card_text(summary.card)
    assert "1 of 2 answered (50%). Closed" in body
    assert "1: 0 · 2: 0 · 3: 0 · 4: 0 · 5: 1 · mean 5.0 of 5 (1 answer)" in body
    assert "Yes: 0 · No: 0 · Not sure: 1 (1 answer)" in body
    assert "“Price objections, every time”" in body and "Alice" not in body

    # After the close, answers are refused politely.
    late = await chat.reply_to(await chat.press(BOB, bob_card, "Answer"))
    assert "This request closed on" in card_text(late.card)
    with server.store.session() as s:
        assert records.answers_of(s, request_id=1, member_id=3) == {}


async def test_a_rep_typing_feedback_is_told_why_not(chat: Teams) -> None:
    said = await chat.say(ALICE, "feedback")
    text = card_text((await chat.reply_to(said)).card)
    assert "Only marketer, admin members can ask the field for feedback; you are a rep" in text
