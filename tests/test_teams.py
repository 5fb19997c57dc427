"""Teams end to end: Bot Framework activities over real HTTP into `/api/messages` of
`liaison serve` (the Agents SDK's CloudAdapter in emulator mode), connector calls answered and
recorded by a local stand-in."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot import teams
from bot.core.messages import (
    Button,
    Card,
    Fact,
    Form,
    Input,
    InputKind,
    Option,
    Refresh,
    Select,
    Style,
)
from bot.core.text import text_for
from bot.teams.cards import card_attachment, escape_md, form_attachment
from storage import campaigns
from storage import leads as stored_leads
from storage import members as stored_members
from storage.models import CardLocation, EventKind, Lead, LeadEvent, Member
from tests.support import (
    LiveServer,
    eventually,
    fixture,
    signed_lead_headers,
    teams_settings,
)
from tests.teams_standin import Call, Person, TeamsStandIn, connector_with

BOT_ID = fixture("teams", "personal_message")["recipient"]["id"]
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
MESSAGE_TYPE = "application/vnd.microsoft.activity.message"


ALICE = Person("alice", "Alice", "Adams")
CAROL = Person("carol", "Carol", "Chen")
BOB = Person("bob", "Bob", "Brown")
DAVE = Person("dave", "Dave", "Davis")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def card_text(card: dict[str, Any]) -> str:
    """Everything a person reads on a card, markdown escapes removed."""
    parts: list[str] = []
    for element in card.get("body", []):
        if element.get("type") == "TextBlock":
            parts.append(element["text"])
        for fact in element.get("facts", []):
            parts += [fact["title"], fact["value"]]
    return unescape("\n".join(parts))


def titles(card: dict[str, Any]) -> list[str]:
    return [action["title"] for action in card.get("actions", [])]


class Teams:
    """Talks to `/api/messages` the way the Teams service does, for several people."""

    def __init__(self, server: LiveServer, standin: TeamsStandIn, http: aiohttp.ClientSession):
        self.server = server
        self.standin = standin
        self.http = http
        self.answers: dict[str, dict[str, Any]] = {}  # activity id → its invoke answer

    def activity(self, name: str, person: Person, **fields: Any) -> dict[str, Any]:
        activity = copy.deepcopy(fixture("teams", name))
        activity.update(
            id=fields.pop("id", None) or f"f:{uuid.uuid4().hex}",
            serviceUrl=self.standin.service_url,
        )
        activity["from"] = {**activity["from"], "id": person.user_id}
        if "name" in activity["from"]:
            activity["from"]["name"] = person.name
        activity["conversation"]["id"] = person.conversation
        if "membersAdded" in activity:
            activity["membersAdded"] = [{"id": BOT_ID}, {"id": person.user_id}]
        activity.update(fields)
        return {k: v for k, v in activity.items() if v is not None}

    async def post(self, activity: dict[str, Any]) -> int:
        async with self.http.post(f"{self.server.url}/api/messages", json=activity) as response:
            return response.status

    async def invoke(
        self,
        person: Person,
        card: Call,
        action: dict[str, Any],
        data: dict[str, Any],
        trigger: str = "manual",
        activity_id: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send the `adaptiveCard/action` invoke Teams sends for an `Action.Execute` (its
        data, the card's inputs merged in), as `person`, about the message `card`: the
        activity and the invoke answer, which must be the one Microsoft documents."""
        value = {"action": {"type": "Action.Execute", "verb": action["verb"], "data": data}}
        activity = self.activity(
            "card_action",
            person,
            replyToId=card.answered_id,
            value={**value, "trigger": trigger},
            id=activity_id,
        )
        async with self.http.post(f"{self.server.url}/api/messages", json=activity) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
        assert answer["statusCode"] == 200, answer
        assert answer["type"] in (CARD_TYPE, MESSAGE_TYPE), answer
        return activity, answer

    def answered(self, activity: dict[str, Any]) -> dict[str, Any]:
        """The card Teams put in place of the one acted on (the invoke's answer)."""
        answer = self.answers[activity["id"]]
        assert answer["type"] == CARD_TYPE, answer
        card: dict[str, Any] = answer["value"]
        return card

    async def view(self, person: Person, card: Call) -> dict[str, Any]:
        """The card as `person` sees it: Teams refreshes a card for the users it names in
        `refresh.userIds` (automatically, as they look at it); anyone else sees it as sent."""
        refresh = card.card.get("refresh")
        if refresh is None or person.user_id not in refresh["userIds"]:
            return card.card
        action = refresh["action"]
        _, answer = await self.invoke(person, card, action, action["data"], "automatic")
        assert answer["type"] == CARD_TYPE
        seen: dict[str, Any] = answer["value"]
        return seen

    async def meet(self, person: Person) -> None:
        assert await self.post(self.activity("conversation_update_personal", person)) == 202

    async def say(self, person: Person, text: str) -> dict[str, Any]:
        activity = self.activity("personal_message", person, text=text)
        assert await self.post(activity) == 202
        return activity

    async def press(
        self, person: Person, card: Call, label: str, activity_id: str | None = None
    ) -> dict[str, Any]:
        """Press the button `label` on the card as `person` sees it; the invoke answer (the
        card as it now stands for them) is kept in `answers` under the activity's id."""
        seen = await self.view(person, card)
        action = next(a for a in seen.get("actions", []) if a["title"] == label)
        activity, answer = await self.invoke(
            person, card, action, dict(action["data"]), activity_id=activity_id
        )
        self.answers[activity["id"]] = answer
        return activity

    async def submit(
        self, person: Person, form: Call, answers: dict[str, str], activity_id: str | None = None
    ) -> dict[str, Any]:
        """Fill in a form card and press its Submit button (inputs merge into `data`)."""
        action = form.card["actions"][0]
        activity, answer = await self.invoke(
            person, form, action, {**action["data"], **answers}, activity_id=activity_id
        )
        self.answers[activity["id"]] = answer
        return activity

    def replies_to(self, activity: dict[str, Any]) -> list[Call]:
        return [
            c
            for c in self.standin.of("reply", activity["conversation"]["id"])
            if c.activity_id == activity["id"]
        ]

    async def reply_to(self, activity: dict[str, Any]) -> Call:
        found: list[Call] = await eventually(lambda: self.replies_to(activity))
        return found[-1]

    async def lead(self, **fields: Any) -> None:
        body = json.dumps(fields).encode()
        async with self.http.post(
            f"{self.server.url}/api/leads", data=body, headers=signed_lead_headers(body)
        ) as response:
            assert response.status == 200, await response.text()

    async def handoff_card(self, person: Person, lead_name: str) -> Call:
        """The card about `lead_name` sent to `person`, once its location is recorded."""
        await self.server.settle()

        def sent() -> list[Call]:
            return [
                c
                for c in self.standin.of("send", person.conversation)
                if lead_name in card_text(c.card)
            ]

        found: list[Call] = await eventually(sent)
        return found[-1]

    async def updates_of(self, call: Call, count: int = 1) -> list[Call]:
        def updated() -> list[Call]:
            found = [
                c
                for c in self.standin.of("update", call.conversation)
                if c.activity_id == call.answered_id
            ]
            return found if len(found) >= count else []

        result: list[Call] = await eventually(updated)
        return result


def now() -> datetime:
    return datetime.now(UTC)


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
    with live.store.session() as session:
        carol = stored_members.upsert_member(
            session, now=now(), email=CAROL.email, name=CAROL.name, role="marketer"
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


def member(server: LiveServer, person: Person) -> Member | None:
    with server.store.session() as session:
        return stored_members.member_by(session, teams_user_id=person.user_id)


def lead_named(server: LiveServer, name: str) -> Lead:
    with server.store.session() as session:
        found = session.exec(select(Lead).where(Lead.name == name)).one()
        return found


def events(server: LiveServer, lead: Lead, kind: EventKind) -> list[LeadEvent]:
    with server.store.session() as session:
        return stored_leads.events_of(session, lead_id=lead.id or 0, kind=kind)


# ---------------------------------------------------------------- meeting people


async def test_conversation_update_stores_reference_and_email(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    await chat.meet(ALICE)

    alice = member(server, ALICE)
    assert alice is not None
    assert alice.email == ALICE.email
    assert alice.name == ALICE.name  # from the member lookup (givenName + surname)
    assert alice.teams_reference is not None
    assert alice.teams_reference["conversation"]["id"] == ALICE.conversation
    assert alice.teams_reference["serviceUrl"] == standin.service_url
    assert alice.teams_reference["user"]["id"] == ALICE.user_id
    assert [c.activity_id for c in standin.of("member", ALICE.conversation)] == [ALICE.user_id]


async def test_first_message_and_installation_store_the_member(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    await chat.say(DAVE, "hello")
    dave = member(server, DAVE)
    assert dave is not None and dave.email == DAVE.email
    assert dave.teams_reference is not None
    assert dave.teams_reference["conversation"]["id"] == DAVE.conversation

    await chat.post(chat.activity("installation_update", BOB))
    bob = member(server, BOB)
    assert bob is not None and bob.email == BOB.email and bob.teams_reference is not None

    await chat.say(DAVE, "help")  # known email: no second lookup
    assert len(standin.of("member", DAVE.conversation)) == 1


async def test_existing_member_is_linked_by_email(chat: Teams, server: LiveServer) -> None:
    await chat.meet(CAROL)
    carol = member(server, CAROL)
    assert carol is not None
    assert carol.role == "marketer" and carol.email == CAROL.email


async def test_uninstall_forgets_the_personal_chat(chat: Teams, server: LiveServer) -> None:
    await chat.meet(ALICE)
    await chat.post(chat.activity("installation_update", ALICE, action="remove"))
    alice = member(server, ALICE)
    assert alice is not None and alice.teams_reference is None


# ---------------------------------------------------------------- commands


async def test_help_lists_the_commands(chat: Teams) -> None:
    said = await chat.say(ALICE, "help")
    reply = await chat.reply_to(said)
    text = card_text(reply.card)
    for command in ("help", "leaddef", "leads"):
        assert command in text
    assert reply.body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"


async def test_mention_is_stripped_and_command_lowercased(chat: Teams) -> None:
    activity = chat.activity(
        "personal_message",
        ALICE,
        text="<at>Liaison</at> LeadDef",
        entities=[
            {
                "type": "mention",
                "text": "<at>Liaison</at>",
                "mentioned": {"id": BOT_ID, "name": "Liaison"},
            }
        ],
    )
    await chat.post(activity)
    reply = await chat.reply_to(activity)
    assert "Lead definition v1" in card_text(reply.card)


async def test_unknown_command_answers_with_help(chat: Teams) -> None:
    said = await chat.say(ALICE, "frobnicate")
    assert "frobnicate" in card_text((await chat.reply_to(said)).card)


# ---------------------------------------------------------------- the journey


async def test_journey(chat: Teams, server: LiveServer, standin: TeamsStandIn) -> None:
    await chat.say(ALICE, "hi")
    await chat.meet(CAROL)

    # A lead arrives: a proactive handoff card in Alice's chat.
    await chat.lead(
        external_id="L-1",
        name="Dana Diaz",
        company="Acme",
        campaign="Webinar",
        owner_email=ALICE.email,
    )
    card1 = await chat.handoff_card(ALICE, "Dana Diaz")
    # As sent, the card shows the lead to anyone and refreshes itself for Alice, who may act.
    assert titles(card1.card) == [] and card1.card["refresh"]["userIds"] == [ALICE.user_id]
    assert "Dana Diaz" in card_text(card1.card)
    seen = await chat.view(ALICE, card1)
    assert titles(seen) == ["Accept", "Not a fit", "Need info", "Log attempt", "Share insight"]
    assert all(a["type"] == "Action.Execute" for a in seen["actions"])
    assert card1.activity_id == ""  # a new message, not a reply to anything

    # Accept: Teams gets the card as it now stands for Alice in answer; the message is also
    # updated in place for everyone; the same activity twice acts once.
    accept = await chat.press(ALICE, card1, "Accept")
    answer = chat.answers[accept["id"]]
    assert answer["type"] == CARD_TYPE
    assert "Accepted by Alice" in card_text(answer["value"])
    assert titles(answer["value"]) == ["Not a fit", "Need info", "Log attempt", "Share insight"]
    await chat.post(accept)
    [update] = await chat.updates_of(card1)
    assert "Accepted by Alice" in card_text(update.card) and titles(update.card) == []
    assert len(events(server, lead_named(server, "Dana Diaz"), EventKind.accepted)) == 1
    assert not chat.replies_to(accept)

    # Not a fit on a second lead: a form with the criteria, then the card is updated.
    await chat.lead(
        external_id="L-2", name="Eve Evans", campaign="Webinar", owner_email=ALICE.email
    )
    card2 = await chat.handoff_card(ALICE, "Eve Evans")
    form = await chat.reply_to(await chat.press(ALICE, card2, "Not a fit"))
    criteria = next(e for e in form.card["body"] if e.get("id") == "criteria")
    assert criteria["isMultiSelect"] is True
    assert {"budget", "authority"} <= {c["value"] for c in criteria["choices"]}
    sent = await chat.submit(ALICE, form, {"criteria": "budget,authority", "comment": "No budget"})
    [update2] = await chat.updates_of(card2)
    assert "Not a fit" in card_text(update2.card)
    [verdict] = events(server, lead_named(server, "Eve Evans"), EventKind.not_a_fit)
    assert verdict.data["criteria"] == ["budget", "authority"]
    assert verdict.data["comment"] == "No budget"
    assert "Saved" in card_text(chat.answered(sent))  # the form, replaced for Alice

    # Need info: the question goes to Carol, her answer comes back on Alice's card.
    question_form = await chat.reply_to(await chat.press(ALICE, card1, "Need info"))
    await chat.submit(ALICE, question_form, {"question": "What budget did they mention?"})
    question = await chat.handoff_card(CAROL, "What budget did they mention?")
    assert titles(question.card) == ["Answer"]
    answer_form = await chat.reply_to(await chat.press(CAROL, question, "Answer"))
    await chat.submit(CAROL, answer_form, {"answer": "About 50k this quarter"})

    def answer_in_thread() -> list[Call]:
        return [
            c for c in standin.of("reply", ALICE.conversation) if c.activity_id == card1.answered_id
        ]

    [answer] = await eventually(answer_in_thread)
    assert "About 50k this quarter" in card_text(answer.card)
    updates = await chat.updates_of(card1, count=3)  # accepted, question, answer
    assert "About 50k this quarter" in card_text(updates[-1].card)
    [answered] = await chat.updates_of(question)
    assert "Answer" not in titles(answered.card)

    # Log attempt twice; the same form submitted twice (same nonce) counts once.
    for channel, outcome in (("call", "no_answer"), ("email", "connected")):
        attempt_form = await chat.reply_to(await chat.press(ALICE, card1, "Log attempt"))
        answers = {"channel": channel, "outcome": outcome, "note": ""}
        await chat.submit(ALICE, attempt_form, answers)
        await chat.submit(ALICE, attempt_form, answers)
    lead1 = lead_named(server, "Dana Diaz")
    assert len(events(server, lead1, EventKind.attempt_logged)) == 2
    updates = await chat.updates_of(card1, count=5)
    assert "2 so far · last: Email, Talked to them" in card_text(updates[-1].card)


async def test_form_errors_are_explained_and_resubmit_works(
    chat: Teams, server: LiveServer
) -> None:
    await chat.say(ALICE, "hi")
    await chat.lead(external_id="L-9", name="Finn Fox", owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Finn Fox")
    form = await chat.reply_to(await chat.press(ALICE, card, "Not a fit"))

    refused = await chat.submit(ALICE, form, {"comment": "no"})
    problem = await chat.reply_to(refused)
    assert "Please fix: Criteria not met — Pick at least one" in card_text(problem.card)
    assert not [c for c in chat.standin.of("update") if c.activity_id == form.answered_id]

    await chat.submit(ALICE, form, {"criteria": "budget", "comment": "no"})
    assert len(events(server, lead_named(server, "Finn Fox"), EventKind.not_a_fit)) == 1


async def test_someone_else_cannot_act_on_the_lead(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    await chat.say(ALICE, "hi")
    await chat.say(BOB, "hi")
    await chat.lead(external_id="L-3", name="Gil Grant", owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Gil Grant")
    assert titles(await chat.view(BOB, card)) == []  # Bob is not refreshed: read-only
    # Bob sends Alice's Accept from his own chat: as a Universal Action, and as the message
    # a card from before Universal Actions (Action.Submit) sends.
    accept = next(a for a in (await chat.view(ALICE, card))["actions"] if a["title"] == "Accept")
    invoked, answer = await chat.invoke(BOB, card, accept, dict(accept["data"]))
    submitted = chat.activity("card_submit", BOB, value=dict(accept["data"]))
    await chat.post(submitted)

    for activity in (invoked, submitted):
        refusal = await chat.reply_to(activity)
        assert "belongs to Alice" in card_text(refusal.card)
        assert refusal.conversation == BOB.conversation
    # His invoke is answered with a refusal card, nothing of the lead on it.
    assert "Gil Grant" not in json.dumps(answer) and "belongs to Alice" in json.dumps(answer)
    assert not standin.of("update")
    assert lead_named(server, "Gil Grant").state == "handed_off"


async def test_each_viewer_sees_the_card_for_them(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    """A handoff card refreshes itself for the owner and the owner's manager: the owner gets
    the buttons, the manager the state with the buttons as an override (and a line saying
    so), anyone else the card as sent, without buttons; a made-up refresh shows nothing."""
    await chat.say(ALICE, "hi")
    await chat.say(CAROL, "hi")
    await chat.say(BOB, "hi")
    with server.store.session() as session:
        carol = stored_members.member_by(session, teams_user_id=CAROL.user_id)
        alice = stored_members.member_by(session, teams_user_id=ALICE.user_id)
        assert carol is not None and alice is not None
        alice.manager_id = carol.id
        session.add(alice)
    await chat.lead(external_id="L-7", name="Ivy Iles", company="Acme", owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Ivy Iles")
    assert card.card["refresh"]["userIds"] == [ALICE.user_id, CAROL.user_id]
    assert titles(card.card) == []

    owner, manager = await chat.view(ALICE, card), await chat.view(CAROL, card)
    buttons = ["Accept", "Not a fit", "Need info", "Log attempt", "Share insight"]
    assert titles(owner) == buttons and titles(manager) == buttons
    assert "manager" not in card_text(owner) and "as Alice Adams's manager" in card_text(manager)
    assert "Ivy Iles" in card_text(owner) and "Ivy Iles" in card_text(manager)
    assert titles(await chat.view(BOB, card)) == []

    # The manager's override counts, and the answer is the card as the manager now sees it.
    pressed = await chat.press(CAROL, card, "Accept")
    answer = chat.answers[pressed["id"]]["value"]
    assert "Accepted by Carol" in card_text(answer) and "Accept" not in titles(answer)
    assert lead_named(server, "Ivy Iles").state == "accepted"

    # Bob asks for the card's refresh from his own chat, where the card is not: refused.
    refresh = card.card["refresh"]["action"]
    _, forged = await chat.invoke(BOB, card, refresh, refresh["data"], "automatic")
    assert "Ivy Iles" not in json.dumps(forged) and "belongs to Alice" in json.dumps(forged)


async def test_lead_text_is_escaped(chat: Teams) -> None:
    await chat.say(ALICE, "hi")
    evil = "<at>Everyone</at> **bold** [x](http://evil)"
    await chat.lead(external_id="L-4", name=evil, owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Everyone")
    everything = json.dumps(card.body, ensure_ascii=False)  # card and notification summary
    assert "<at>" not in everything and "</at>" not in everything
    raw = json.dumps(card.card, ensure_ascii=False)
    assert "**bold**" not in raw
    assert "[x](http://evil)" not in raw
    assert escape_md(evil) in [e.get("text") for e in card.card["body"]]


# ---------------------------------------------------------------- bad input


async def test_bad_input_gets_a_4xx_json_answer(chat: Teams, server: LiveServer) -> None:
    url = f"{server.url}/api/messages"
    json_header = {"Content-Type": "application/json"}
    cases: list[tuple[bytes, dict[str, str]]] = [
        (b"{not json", json_header),
        (b"[1, 2]", json_header),
        (json.dumps({"id": "x", "text": "hi"}).encode(), json_header),
        (json.dumps({**fixture("teams", "personal_message"), "type": ""}).encode(), json_header),
        (
            json.dumps({**fixture("teams", "personal_message"), "timestamp": "soon"}).encode(),
            json_header,
        ),
        (b"\xff\xfe", json_header),
        (b"type=message", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"{}", {}),
    ]
    for body, headers in cases:
        async with chat.http.post(url, data=body, headers=headers) as response:
            assert 400 <= response.status < 500, (body, response.status)
            assert "error" in await response.json()
    no_bot = {**chat.activity("personal_message", ALICE), "recipient": None}
    async with chat.http.post(url, json=no_bot) as response:
        assert response.status == 400 and "recipient.id" in (await response.json())["error"]
    async with chat.http.get(f"{server.url}/healthz") as response:
        assert response.status == 200


async def test_connector_failure_is_not_a_stack_trace(chat: Teams, standin: TeamsStandIn) -> None:
    standin.members.clear()  # the lookup now answers 404; the bot still answers
    said = await chat.say(DAVE, "help")
    reply = await chat.reply_to(said)
    assert "leaddef" in card_text(reply.card)


async def test_a_failed_turn_gets_a_short_friendly_answer(chat: Teams, server: LiveServer) -> None:
    await chat.say(ALICE, "hi")
    with server.store.engine.begin() as connection:  # the database breaks mid-flight
        connection.exec_driver_sql("DROP TABLE processed_requests")
    activity = chat.activity("personal_message", ALICE, text="help")
    assert await chat.post(activity) == 202
    reply = await chat.reply_to(activity)
    assert reply.body["text"] == text_for("turn_failed")
    assert "Traceback" not in json.dumps(reply.body) and "Error" not in json.dumps(reply.body)


async def test_a_failed_invoke_is_answered_with_the_error_teams_shows(
    chat: Teams, server: LiveServer
) -> None:
    await chat.say(ALICE, "hi")
    await chat.lead(external_id="L-8", name="Jo Jones", owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Jo Jones")
    accept = next(a for a in (await chat.view(ALICE, card))["actions"] if a["title"] == "Accept")
    with server.store.engine.begin() as connection:  # the database breaks mid-flight
        connection.exec_driver_sql("DROP TABLE processed_requests")
    activity = chat.activity(
        "card_action",
        ALICE,
        replyToId=card.answered_id,
        value={"action": {"type": "Action.Execute", "verb": "lead.accept", "data": accept["data"]}},
    )
    async with chat.http.post(f"{server.url}/api/messages", json=activity) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["statusCode"] == 500 and answer["type"] == "application/vnd.microsoft.error"
    assert answer["value"]["message"] == text_for("turn_failed")
    assert "Traceback" not in json.dumps(answer)
    reply = await chat.reply_to(activity)
    assert reply.body["text"] == text_for("turn_failed")


async def test_a_refused_proactive_send_is_logged_not_answered(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    await chat.say(ALICE, "hi")
    standin.uninstalled.add(ALICE.conversation)  # Alice removed the app meanwhile
    await chat.lead(external_id="L-5", name="Hal Hill", owner_email=ALICE.email)
    await server.settle()
    refused = standin.of("refused", ALICE.conversation)
    assert len(refused) == 1  # the card was tried once; no apology sent after it
    assert "Hal Hill" in card_text(refused[0].card)
    async with chat.http.get(f"{server.url}/healthz") as response:
        assert response.status == 200


# ---------------------------------------------------------------- the messenger directly


async def test_messenger_posts_to_a_channel_and_replies_in_thread(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    standin.add_conversation("19:digest@thread.tacv2")  # the bot is installed there
    settings = teams_settings("sqlite://")
    adapter = teams.make_adapter(settings)
    messenger = teams.TeamsMessenger(adapter, settings)
    with pytest.raises(LookupError):
        await messenger.post("19:digest@thread.tacv2", Card(title="Weekly digest"))

    await chat.say(ALICE, "hi")
    alice = member(server, ALICE)
    assert alice is not None and messenger.reaches(alice)
    sent = await messenger.send(alice, Card(title="Hello Alice"))
    assert sent.channel == ALICE.conversation and sent.reference is not None
    posted = await messenger.post("19:digest@thread.tacv2", Card(title="Weekly digest"))
    [call] = standin.of("send", "19:digest@thread.tacv2")
    assert call.answered_id == posted.message_id
    assert "Weekly digest" in card_text(call.card)


async def test_the_connector_refuses_unknown_activities_and_conversations(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    """Like the real connector: an update of a message it never created, or a post into a
    conversation the bot is not in, is a 404 that reaches Liaison as an error."""
    await chat.say(ALICE, "hi")
    alice = member(server, ALICE)
    assert alice is not None and alice.teams_reference is not None
    settings = teams_settings("sqlite://")
    messenger = teams.TeamsMessenger(teams.make_adapter(settings), settings)
    sent = await messenger.send(alice, Card(title="Hello"))
    location = CardLocation(
        lead_id=1,
        platform="teams",
        channel=ALICE.conversation,
        message_id=sent.message_id,
        reference=alice.teams_reference,
        created_at=now(),
    )
    await messenger.update(location, Card(title="Hello again"))
    assert [c.activity_id for c in standin.of("update")] == [sent.message_id]
    location.message_id = "1699999999999"  # never created
    with pytest.raises(teams.ConnectorError):
        await messenger.update(location, Card(title="Nope"))
    with pytest.raises(teams.ConnectorError):
        await messenger.post("19:not-installed@thread.tacv2", Card(title="Nope"))
    assert [(c.conversation, c.status) for c in standin.of("unknown")] == [
        (ALICE.conversation, 404),
        ("19:not-installed@thread.tacv2", 404),
    ]


# ---------------------------------------------------------------- parsing and rendering


def submitted(value: dict[str, Any], text: str | None = None) -> Any:
    """The attributes of an activity `to_interaction` reads (a plain stand-in object)."""
    return SimpleNamespace(
        value=value,
        text=text,
        id="f:1",
        reply_to_id="1700000000001",
        entities=[],
        recipient=SimpleNamespace(id=BOT_ID),
        conversation=SimpleNamespace(id=ALICE.conversation),
    )


def test_form_submit_becomes_a_form_interaction() -> None:
    form = Form(
        name="lead.not_a_fit",
        title="Not a fit",
        inputs=(
            Input("criteria", "Criteria", InputKind.multiselect),
            Input("comment", "Comment", InputKind.multiline, required=False),
        ),
        state={"lead_id": "5", "nonce": "n1"},
    )
    data = form_attachment(form)["content"]["actions"][0]["data"]
    actor = Member(name="Alice", handle="alice", created_at=now())
    interaction = teams.to_interaction(submitted({**data, "criteria": "budget, authority"}), actor)
    assert interaction.kind.value == "form" and interaction.name == "lead.not_a_fit"
    assert interaction.args == {"lead_id": "5", "nonce": "n1"}
    assert interaction.values == {"criteria": ["budget", "authority"], "comment": []}
    assert interaction.request_id == "form:n1"
    assert interaction.where.message_id == "1700000000001"


def test_select_and_button_submits_become_actions() -> None:
    card = Card(selects=(Select("Campaign", "campaign.pick", (Option("campaign=1", "Webinar"),)),))
    body = card_attachment(card)["content"]["body"]
    choice, action_set = body
    data = action_set["actions"][0]["data"]
    actor = Member(name="Alice", handle="alice", created_at=now())
    picked = teams.to_interaction(submitted({**data, choice["id"]: "campaign=1"}), actor)
    assert (picked.kind.value, picked.name, picked.args) == (
        "action",
        "campaign.pick",
        {"campaign": "1"},
    )
    pressed = teams.to_interaction(
        submitted({"action": "lead.accept", "value": "lead_id=7"}), actor
    )
    assert pressed.args == {"lead_id": "7"} and pressed.request_id == "activity:f:1"
    typed = teams.to_interaction(submitted({}, text="  /Leads  mine "), actor)
    assert (typed.kind.value, typed.name, typed.text) == ("command", "leads", "mine")


def test_escape_md_neutralises_markdown_mentions_and_html() -> None:
    assert escape_md("**a** _b_ [c](d)") == r"\*\*a\*\* \_b\_ \[c\]\(d\)"
    assert escape_md("<at>x</at> & co") == "＜at＞x＜/at＞ ＆ co"
    assert escape_md("1. one\n2) two") == "1\\. one\n2\\) two"
    assert escape_md("- item\n# head\n> quote") == "\\- item\n\\# head\n＞ quote"
    assert escape_md(r"back\slash {{DATE(x)}}") == r"back\\slash \{\{DATE\(x\)\}\}"
    assert escape_md("plain words, 2.5 ok") == "plain words, 2.5 ok"


def test_card_rendering() -> None:
    card = Card(
        title="T",
        text="body",
        fields=(Fact("Company", "Acme"),),
        context="ctx",
        buttons=(
            Button("Go", "lead.accept", "lead_id=1", Style.primary),
            Button("No", "lead.not_a_fit", "lead_id=1", Style.danger),
        ),
    )
    attachment = card_attachment(card)
    content = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert content["version"] == "1.5" and content["type"] == "AdaptiveCard"
    title, _, facts, context = content["body"]
    assert title == {
        "type": "TextBlock",
        "text": "T",
        "wrap": True,
        "weight": "bolder",
        "size": "medium",
    }
    assert facts["facts"] == [{"title": "Company", "value": "Acme"}]
    assert context["isSubtle"] is True and context["size"] == "small"
    go, no = content["actions"]
    assert go == {
        "type": "Action.Execute",
        "title": "Go",
        "verb": "lead.accept",
        "style": "positive",
        "data": {"action": "lead.accept", "value": "lead_id=1"},
    }
    assert no["style"] == "destructive"
    assert "refresh" not in content


def test_a_card_that_refreshes_is_read_only_until_drawn_for_someone() -> None:
    card = Card(
        title="T",
        buttons=(Button("Go", "lead.accept", "lead_id=1", Style.primary),),
        selects=(Select("Pick", "campaign.pick", (Option("campaign=1", "Webinar"),)),),
        refresh=Refresh("lead.view", "lead_id=1", (1, 2)),
    )
    base = card_attachment(card, user_ids=["29:a", "29:b"])["content"]
    assert "actions" not in base and [e["type"] for e in base["body"]] == ["TextBlock"]
    redraw = {"action": "lead.view", "value": "lead_id=1"}
    assert base["refresh"] == {
        "action": {
            "type": "Action.Execute",
            "title": "Refresh",
            "verb": "lead.view",
            "data": {**redraw, "card": redraw},
        },
        "userIds": ["29:a", "29:b"],
    }
    own = card_attachment(card, user_ids=["29:a"], own=True)["content"]
    [go] = own["actions"]
    assert go["data"] == {"action": "lead.accept", "value": "lead_id=1", "card": redraw}
    assert own["refresh"]["userIds"] == ["29:a"]
    picker = own["body"][2]["actions"][0]
    assert picker["verb"] == "campaign.pick" and picker["data"]["card"] == redraw
    assert "refresh" not in card_attachment(card)["content"]  # nobody to refresh it for


def test_form_rendering() -> None:
    form = Form(
        name="lead.not_a_fit",
        title="Not a fit",
        intro="Why?",
        inputs=(
            Input(
                "criteria",
                "Criteria",
                InputKind.multiselect,
                (Option("budget", "Budget"), Option("authority", "Authority")),
            ),
            Input("comment", "Comment", InputKind.multiline, required=False, max_length=100),
            Input("channel", "Channel", InputKind.select, (Option("call", "Call"),)),
        ),
        state={"lead_id": "5", "nonce": "n1"},
    )
    content = form_attachment(form)["content"]
    _, _, criteria, comment, channel = content["body"]
    assert criteria["type"] == "Input.ChoiceSet" and criteria["isMultiSelect"] is True
    assert criteria["style"] == "compact" and criteria["isRequired"] is True
    assert "errorMessage" in criteria
    assert criteria["choices"] == [
        {"title": "Budget", "value": "budget"},
        {"title": "Authority", "value": "authority"},
    ]
    assert comment["type"] == "Input.Text" and comment["isMultiline"] is True
    assert comment["maxLength"] == 100 and "isRequired" not in comment
    assert channel["isMultiSelect"] is False
    [submit] = content["actions"]
    assert submit["type"] == "Action.Execute" and submit["verb"] == "lead.not_a_fit"
    assert submit["data"]["form"] == "lead.not_a_fit"
    assert submit["data"]["lead_id"] == "5" and submit["data"]["nonce"] == "n1"


async def test_home_shows_what_waits_for_me(chat: Teams) -> None:
    said = await chat.say(ALICE, "home")
    calm = card_text((await chat.reply_to(said)).card)
    assert "Nothing waits for you right now" in calm
    await chat.lead(external_id="H-1", name="Hana Ito", company="Acme", owner_email=ALICE.email)
    await chat.handoff_card(ALICE, "Hana Ito")
    said = await chat.say(ALICE, "home")
    reply = await chat.reply_to(said)
    text = card_text(reply.card)
    assert "1 lead." in text and "Hana Ito (Acme): waiting for your verdict" in text
    assert "first touch: due" in text and "of business time left" in text
    assert titles(reply.card) == ["Show my leads", "Refresh"]


async def test_digest_preview_in_a_personal_chat(chat: Teams) -> None:
    said = await chat.say(ALICE, "digest preview")
    reply = await chat.reply_to(said)
    text = card_text(reply.card)
    assert "Weekly alignment digest" in text and "Agenda for the weekly sync" in text
    images = [e for e in reply.card["body"] if e["type"] == "Image"]
    assert images and images[0]["url"].startswith("data:image/png;base64,")


async def test_a_reference_botbuilder_stored_still_reaches_the_member(
    chat: Teams, server: LiveServer, standin: TeamsStandIn
) -> None:
    """An installation upgraded from botbuilder keeps reaching its members: the reference
    stored then (botbuilder 4.17.1's JSON, which spells the tenant `tenantID`) is read,
    the tenant kept, and the member's next activity stores it in the SDK's shape."""
    stored = fixture("teams", "botbuilder_reference")
    stored["serviceUrl"] = standin.service_url
    tenant = stored["conversation"]["tenantID"]
    with server.store.session() as session:
        alice = stored_members.upsert_member(
            session, now=now(), email=ALICE.email, name=ALICE.name, teams_user_id=ALICE.user_id
        )
        alice.teams_reference = stored
        session.add(alice)
    await chat.lead(external_id="B-1", name="Bea Berg", company="Acme", owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Bea Berg")
    assert card.body["conversation"] == {
        "conversationType": "personal",
        "id": ALICE.conversation,
        "tenantId": tenant,
    }
    await chat.press(ALICE, card, "Accept")
    await eventually(lambda: lead_named(server, "Bea Berg").state == "accepted")
    alice_now = member(server, ALICE)
    assert alice_now is not None and alice_now.teams_reference is not None
    assert alice_now.teams_reference["conversation"]["tenantId"] == tenant
    assert "tenantID" not in alice_now.teams_reference["conversation"]


async def test_the_replies_of_many_turns_share_one_connection_to_the_connector(
    chat: Teams, standin: TeamsStandIn
) -> None:
    """Each turn's connector client is closed when the turn ends, but its connections stay
    in a pool: five messages, five replies, one TCP connection (no handshake per reply)."""
    for _ in range(5):
        assert await chat.post(chat.activity("personal_message", ALICE, text="help")) == 202
    replies = standin.of("reply", ALICE.conversation)
    assert len(replies) == 5
    assert len(standin.peers) >= 5 and len(set(standin.peers)) == 1, standin.peers
