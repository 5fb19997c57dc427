"""Forged Teams submits: Bob sends, from his own chat, the data of a button or form about
Alice's lead. The server re-checks him against the lead; nothing is stored, nothing of the
lead is shown, and the answer goes to Bob's own conversation only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import select

from bot.teams.cards import FORM_KEY, INPUTS_KEY
from storage import campaigns, members
from storage.models import Insight
from tests.support import LiveServer, teams_settings
from tests.teams_standin import TeamsStandIn, connector_with
from tests.test_teams import ALICE, BOB, CAROL, Teams, card_text, lead_named


@pytest.fixture
async def standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with((ALICE, CAROL, BOB))
    yield connector
    await connector.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    live = await LiveServer(teams_settings(f"sqlite:///{tmp_path / 'liaison.db'}")).start()
    with live.store.session() as session:
        carol = members.upsert_member(
            session, now=datetime.now(UTC), email=CAROL.email, name=CAROL.name, role="marketer"
        )
        campaign = campaigns.ensure_campaign(session, name="Webinar")
        campaign.marketer_id = carol.id
        session.add(campaign)
    yield live
    await live.stop()


@pytest.fixture
async def chat(server: LiveServer, standin: TeamsStandIn) -> AsyncIterator[Teams]:
    async with aiohttp.ClientSession() as http:
        yield Teams(server, standin, http)


async def test_share_insight_and_insight_form_about_alices_lead_are_refused(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    await chat.say(ALICE, "hi")
    await chat.say(BOB, "hi")
    await chat.lead(
        external_id="T-1", name="Ivy Ingram", owner_email=ALICE.email, company="Initech"
    )
    await chat.handoff_card(ALICE, "Ivy Ingram")
    lead_id = lead_named(server, "Ivy Ingram").id
    sent_before = len(standin.calls)

    share = chat.activity(
        "card_submit", BOB, value={"action": "insight.share", "value": f"lead_id={lead_id}"}
    )
    await chat.post(share)
    refusal = await chat.reply_to(share)
    assert "not yours" in card_text(refusal.card)
    assert refusal.conversation == BOB.conversation

    form = chat.activity(
        "card_submit",
        BOB,
        value={
            FORM_KEY: "insight.new",
            INPUTS_KEY: {"text": {"kind": "multiline"}, "kind": {"kind": "select"}},
            "lead_id": str(lead_id),
            "nonce": "forged-1",
            "text": "They ask about pricing",
            "kind": "question",
        },
    )
    await chat.post(form)
    answer = await chat.reply_to(form)
    assert "not yours" in card_text(answer.card)
    assert answer.conversation == BOB.conversation

    accept = chat.activity(
        "card_submit", BOB, value={"action": "lead.accept", "value": f"lead_id={lead_id}"}
    )
    await chat.post(accept)
    refused = await chat.reply_to(accept)
    assert "belongs to Alice" in card_text(refused.card)
    assert lead_named(server, "Ivy Ingram").state == "handed_off"

    await server.settle()
    with server.store.session() as session:
        assert not session.exec(select(Insight)).all()
    later = standin.calls[sent_before:]
    assert all(c.conversation == BOB.conversation for c in later)
    said = json.dumps([c.body for c in later])
    assert "Ivy Ingram" not in said and "Initech" not in said
