"""Insights, content and wins end to end in Teams: commands typed in the personal chat and
card submits as Bot Framework activities into `/api/messages`, the connector stand-in
recording the forms, DMs and channel posts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import select

from storage import campaigns
from storage import members as stored_members
from storage.models import ContentItem, Insight, Win
from tests.support import LiveServer, eventually, teams_settings
from tests.teams_standin import Call, TeamsStandIn, connector_with
from tests.test_teams import ALICE, BOB, CAROL, DAVE, Teams, card_text, now, titles

INSIGHTS = "19:insights-channel@thread.tacv2"
WINS = "19:wins-channel@thread.tacv2"


@pytest.fixture
async def standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with((ALICE, CAROL, BOB, DAVE))
    for channel in (INSIGHTS, WINS):  # the bot is installed in both channels
        connector.add_conversation(channel)
    yield connector
    await connector.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = teams_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        LIAISON_INSIGHTS_CHANNEL=f"teams:{INSIGHTS}",
        LIAISON_WINS_CHANNEL=f"teams:{WINS}",
    )
    live = await LiveServer(settings).start()
    with live.store.session() as session:
        carol = stored_members.upsert_member(
            session, now=now(), email=CAROL.email, name=CAROL.name, role="marketer"
        )
        stored_members.upsert_member(
            session, now=now(), email=DAVE.email, name=DAVE.name, role="marketer"
        )
        campaign = campaigns.ensure_campaign(session, name="Webinar")
        campaign.marketer_id = carol.id
        session.add(campaign)
    yield live
    await live.stop()


@pytest.fixture
async def chat(server: LiveServer, standin: TeamsStandIn) -> AsyncIterator[Teams]:
    async with aiohttp.ClientSession() as http:
        teams = Teams(server, standin, http)
        for person in (ALICE, BOB, CAROL, DAVE):
            await teams.meet(person)
        yield teams


async def sent_to(chat: Teams, conversation: str, words: str) -> Call:
    """The newest proactive message in `conversation` that says `words`."""
    await chat.server.settle()

    def found() -> list[Call]:
        return [c for c in chat.standin.of("send", conversation) if words in card_text(c.card)]

    calls: list[Call] = await eventually(found)
    return calls[-1]


async def form_for(chat: Teams, person: object, text: str) -> Call:
    return await chat.reply_to(await chat.say(person, text))  # type: ignore[arg-type]


def rows(server: LiveServer, model: type) -> list[object]:
    with server.store.session() as session:
        return list(session.exec(select(model)).all())


async def test_insight_to_content_and_back_in_teams(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    # Carol registers content first; a rep may not.
    refused = await form_for(chat, BOB, "content add")
    assert "Only marketer, admin members can register content" in card_text(refused.card)
    form = await form_for(chat, CAROL, "content add")
    assert {e.get("id") for e in form.card["body"]} >= {"title", "link", "stage"}
    bad = await chat.submit(
        CAROL, form, {"title": "SAP guide", "link": "javascript:alert(1)", "stage": "decision"}
    )
    assert "Link (http or https) — That is not a web link" in card_text(
        (await chat.reply_to(bad)).card
    )
    await chat.submit(
        CAROL,
        form,
        {
            "title": "SAP integration guide",
            "link": "https://example.com/sap",
            "tags": "sap, erp",
            "stage": "decision",
        },
    )
    assert len(rows(server, ContentItem)) == 1

    # Alice types the insight; an unknown campaign typed into the submit is refused.
    form = await form_for(chat, ALICE, "insight")
    assert [e.get("id") for e in form.card["body"] if e.get("id")] == [
        "text",
        "kind",
        "campaign",
        "tags",
    ]
    wrong = await chat.submit(
        ALICE, form, {"text": "Can it sync with SAP?", "kind": "question", "campaign": "Spring"}
    )
    problem = card_text((await chat.reply_to(wrong)).card)
    assert "Campaign (optional) — There is no campaign called “Spring”. Known: Webinar." in problem
    long = await chat.submit(ALICE, form, {"text": "x" * 1001, "kind": "question"})
    assert "under 1000 characters" in card_text((await chat.reply_to(long)).card)
    await chat.submit(
        ALICE, form, {"text": "Can it sync with SAP?", "kind": "question", "campaign": "Webinar"}
    )
    (insight,) = rows(server, Insight)

    to_carol = await sent_to(chat, CAROL.conversation, "Can it sync with SAP?")
    assert titles(to_carol.card) == ["Claim", "Answer"]
    posted = await sent_to(chat, INSIGHTS, "Can it sync with SAP?")
    assert titles(posted.card) == ["Claim", "Answer"]

    # Dave claims it from the channel post; Carol is then told it is his.
    claimed = await chat.reply_to(await chat.press(DAVE, posted, "Claim"))
    assert "You claimed this insight" in card_text(claimed.card)
    taken = await chat.reply_to(await chat.press(CAROL, to_carol, "Claim"))
    assert "claimed by Dave Davis" in card_text(taken.card)
    await sent_to(chat, ALICE.conversation, "Dave Davis is working on your insight")

    # Dave answers, linking the matching content from the list.
    answer_form = await chat.reply_to(await chat.press(DAVE, posted, "Answer"))
    picks = next(e for e in answer_form.card["body"] if e.get("id") == "content")
    (choice,) = picks["choices"]
    assert choice["title"] == "SAP integration guide"
    empty = await chat.submit(DAVE, answer_form, {"answer": "", "content": choice["value"]})
    assert "Write the answer" in card_text((await chat.reply_to(empty)).card)
    await chat.submit(
        DAVE, answer_form, {"answer": "Yes, nightly, both ways.", "content": choice["value"]}
    )
    closed = await sent_to(chat, ALICE.conversation, "Dave Davis answered your buyer question")
    text = card_text(closed.card)
    assert "Yes, nightly, both ways." in text
    assert "[SAP integration guide](https://example.com/sap)" in text
    with server.store.session() as session:
        row = session.get(Insight, insight.id)  # type: ignore[attr-defined]
        assert row is not None and row.status == "closed" and row.content_id is not None
    await sent_to(chat, INSIGHTS, "Answered by Dave Davis")

    # Answering again is refused; /content finds the item for anyone.
    again = await chat.reply_to(await chat.press(CAROL, to_carol, "Answer"))
    assert "already answered by Dave Davis" in card_text(again.card)
    found = await form_for(chat, BOB, 'content sap (erp) OR "sync')
    assert "SAP integration guide" in card_text(found.card)
    listed = await form_for(chat, ALICE, "insights")
    assert "no open insights" in card_text(listed.card)


async def test_a_win_in_teams_is_posted_crediting_both_sides(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    await chat.lead(
        external_id="L-1",
        name="Dana Diaz",
        company="Acme",
        campaign="Webinar",
        owner_email=ALICE.email,
    )
    card = await chat.handoff_card(ALICE, "Dana Diaz")
    await chat.press(ALICE, card, "Accept")
    await chat.updates_of(card)

    form = await form_for(chat, ALICE, "win")
    lead_input = next(e for e in form.card["body"] if e.get("id") == "lead")
    (lead_choice,) = lead_input["choices"]
    assert lead_choice["title"] == "Dana Diaz · Acme"
    empty = await chat.submit(ALICE, form, {"story": "   ", "lead": lead_choice["value"]})
    assert "Tell the story" in card_text((await chat.reply_to(empty)).card)
    unknown = await chat.submit(ALICE, form, {"story": "Won", "campaign": "Nope"})
    assert "no campaign called “Nope”" in card_text((await chat.reply_to(unknown)).card)
    await chat.submit(
        ALICE, form, {"story": "Acme signed after the demo.", "lead": lead_choice["value"]}
    )
    post = await sent_to(chat, WINS, "Acme signed after the demo.")
    assert "Alice Adams closed Acme — from Carol Chen's Webinar campaign" in card_text(post.card)
    await sent_to(chat, CAROL.conversation, "Alice Adams credited your Webinar campaign")
    assert len(rows(server, Win)) == 1
    # The same submit again (a retried activity, same nonce) posts nothing more.
    await chat.submit(
        ALICE, form, {"story": "Acme signed after the demo.", "lead": lead_choice["value"]}
    )
    await server.settle()
    assert len(rows(server, Win)) == 1
    assert len(standin.of("send", WINS)) == 1
