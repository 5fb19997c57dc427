"""SLA clocks through Teams: `liaison tick --at` as a real process (the Agents SDK in emulator
mode), cards through the Bot Framework connector stand-in, into the personal chats members
opened by meeting the bot; Teams' throttling waited out, its refusals retried then parked."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import col, select

from bot.core.business_time import Company
from bot.outbox.sender import MAX_ATTEMPTS
from handlers.ingest import LeadIn, store_leads
from storage import members as stored_members
from storage.db import Store
from storage.models import OutboxMessage
from tests.support import LiveServer, fixture, teams_settings
from tests.teams_standin import Call, Person, TeamsStandIn, connector_with

REPO = Path(__file__).parent.parent
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 09:00 in London (GMT)
NOON = MONDAY_9 + timedelta(hours=3)  # 75% of the 4 business-hour first-touch window
BOT_ID = fixture("teams", "personal_message")["recipient"]["id"]
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


ALICE = Person("alice", "Alice", "Adams", "x.com")  # the rep
DAVE = Person("dave", "Dave", "Dawson", "x.com")  # her manager


def card_text(card: dict[str, Any]) -> str:
    """Everything a person reads on a card, markdown escapes removed."""
    parts: list[str] = []
    for element in card.get("body", []):
        if element.get("type") == "TextBlock":
            parts.append(element["text"])
        for fact in element.get("facts", []):
            parts += [fact["title"], fact["value"]]
    return re.sub(r"\\(.)", r"\1", "\n".join(parts))


# ---------------------------------------------------------------- the company


@pytest.fixture
async def standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with((ALICE, DAVE))
    try:
        yield connector
    finally:
        await connector.stop()


def installed(person: Person, standin: TeamsStandIn) -> dict[str, Any]:
    """The conversationUpdate Teams sends when `person` installs the app for themselves."""
    activity = copy.deepcopy(fixture("teams", "conversation_update_personal"))
    activity.update(id=f"f:{uuid.uuid4().hex}", serviceUrl=standin.service_url)
    activity["from"] = {**activity["from"], "id": person.user_id}
    activity["conversation"]["id"] = person.conversation
    activity["membersAdded"] = [{"id": BOT_ID}, {"id": person.user_id}]
    return activity


async def meet_the_bot(url: str, standin: TeamsStandIn, people: list[Person]) -> None:
    """Each person installs the app: the real server stores their id and personal chat."""
    settings = teams_settings(url)
    server = await LiveServer(settings).start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for person in people:
                activity = installed(person, standin)
                async with http.post(f"{server.url}/api/messages", json=activity) as response:
                    assert response.status == 202, await response.text()
        await server.settle()
    finally:
        await server.stop()


@pytest.fixture
async def company(tmp_path: Path, standin: TeamsStandIn) -> AsyncIterator[Store]:
    """Alice (a rep) and Dave (her manager), both in London, both met in Teams; a lead
    handed to Alice on Monday at 09:00."""
    url = f"sqlite:///{tmp_path / 'sla.db'}"
    store = Store.open(url)
    with store.session() as s:
        dave = stored_members.upsert_member(
            s,
            now=MONDAY_9,
            email=DAVE.email,
            name=DAVE.name,
            role="manager",
            timezone="Europe/London",
        )
        stored_members.upsert_member(
            s,
            now=MONDAY_9,
            email=ALICE.email,
            name=ALICE.name,
            timezone="Europe/London",
            manager_id=dave.id,
        )
    await meet_the_bot(url, standin, [ALICE, DAVE])
    with store.session() as s:
        for person in (ALICE, DAVE):
            member = stored_members.member_by(s, email=person.email)
            assert member is not None and member.teams_user_id == person.user_id
            assert member.name == person.name and member.slack_user_id is None
            reference = member.teams_reference
            assert reference is not None
            assert reference["serviceUrl"] == standin.service_url
            assert reference["conversation"]["id"] == person.conversation
            assert reference["conversation"]["conversationType"] == "personal"
        store_leads(
            s,
            [
                LeadIn(
                    external_id="L1",
                    name="Jordan Patel",
                    company="Globex",
                    owner_email=ALICE.email,
                )
            ],
            now=MONDAY_9,
            admin_channel=None,
            company=Company(),
        )
    standin.calls.clear()  # from here on, only what the ticks send
    try:
        yield store
    finally:
        store.engine.dispose()


# ---------------------------------------------------------------- the command line


async def liaison(store: Store, *args: str) -> str:
    """`liaison ARGS` as a real process: Teams in emulator mode, Slack off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIAISON_", "SLACK_", "MICROSOFT_"))
    }
    env.update(
        LIAISON_DATABASE_URL=str(store.engine.url),
        LIAISON_TIMEZONE="Europe/London",
        SLACK_BOT_TOKEN="",
        MICROSOFT_APP_ID="",
        MICROSOFT_APP_PASSWORD="",
        LIAISON_TEAMS_EMULATOR="1",
        COLUMNS="300",  # tables are not cut
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app import main; main()",
        *args,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:  # timed out or cancelled: leave nothing behind
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def tick(store: Store, at: datetime) -> str:
    return await liaison(store, "tick", "--at", at.isoformat())


def the_message(store: Store, message_id: int | None = None) -> OutboxMessage:
    """The only message owed so far (or the one with this id)."""
    with store.session() as s:
        if message_id is not None:
            found = s.get(OutboxMessage, message_id)
            assert found is not None
            return found
        (message,) = s.exec(select(OutboxMessage)).all()
        return message


def sent_to(standin: TeamsStandIn, person: Person) -> list[str]:
    return [card_text(c.card) for c in standin.of("send", person.conversation)]


def reminders(standin: TeamsStandIn) -> list[Call]:
    return [
        c
        for c in standin.of("send")
        if "Reminder: first touch for Jordan Patel" in card_text(c.card)
    ]


# ---------------------------------------------------------------- the clock's steps


async def test_reminder_breach_and_escalation_in_teams_chats(
    company: Store, standin: TeamsStandIn
) -> None:
    await tick(company, NOON - timedelta(minutes=1))
    assert standin.calls == []

    await tick(company, NOON)
    [reminder] = standin.calls
    assert (reminder.verb, reminder.conversation) == ("send", ALICE.conversation)
    assert reminder.activity_id == ""  # a new message, not a reply in some thread
    assert reminder.body["type"] == "message"
    assert reminder.body["recipient"]["id"] == ALICE.user_id
    [attachment] = reminder.body["attachments"]
    assert attachment["contentType"] == ADAPTIVE
    assert reminder.card["type"] == "AdaptiveCard"
    assert "Reminder: first touch for Jordan Patel" in card_text(reminder.card)

    await tick(company, NOON)  # the same moment again: nothing new, not even a try
    assert standin.calls == [reminder]

    # The deadline, 13:00: a private note to Alice.
    await tick(company, MONDAY_9 + timedelta(hours=4))
    assert len(standin.calls) == 2
    assert "SLA window passed: first touch for Jordan Patel" in sent_to(standin, ALICE)[-1]

    # Four business hours later it is 17:00, closing time: Dave's note waits for his morning.
    output = await tick(company, MONDAY_9 + timedelta(hours=8))
    assert "1 messages owed; 0 sent" in output
    assert len(standin.calls) == 2 and sent_to(standin, DAVE) == []

    await tick(company, MONDAY_9 + timedelta(days=1))  # Tuesday 09:00
    [escalation] = sent_to(standin, DAVE)
    assert "Alice Adams: first touch past the SLA window" in escalation
    assert "was due Mon 23 Nov 13:00 GMT" in escalation
    assert standin.of("send", DAVE.conversation)[0].body["recipient"]["id"] == DAVE.user_id

    # Three new messages in the two personal chats; nothing anywhere else.
    assert [c.verb for c in standin.calls] == ["send"] * 3
    assert {c.conversation for c in standin.calls} == {ALICE.conversation, DAVE.conversation}
    assert len(sent_to(standin, ALICE)) == 2
    with company.session() as s:
        rows = s.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
        assert [(r.status, r.platform, r.attempts) for r in rows] == [("sent", "teams", 0)] * 3
        assert [r.message_id for r in rows] == [c.answered_id for c in standin.calls]


# ---------------------------------------------------------------- Teams throttling


GATEWAY_PAGE = "<html><body><h1>504 Gateway Time-out</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "retry_after", "page"),
    [
        pytest.param(429, "1", None, id="429-retry-after"),
        pytest.param(429, None, None, id="429"),
        pytest.param(412, None, None, id="412"),
        pytest.param(502, None, None, id="502"),
        pytest.param(504, None, GATEWAY_PAGE, id="504-html-page"),
    ],
)
async def test_throttled_sends_are_retried_not_counted(
    company: Store,
    standin: TeamsStandIn,
    status: int,
    retry_after: str | None,
    page: str | None,
) -> None:
    """429, 412, 502 and 504 are transient for Teams: wait and send again, no attempt lost.
    The waits are short, so the tick's lane waits them out with the reminder still claimed
    and sends it in the same pass."""
    standin.fail_sends(2, status, retry_after, page)
    started = time.monotonic()
    await tick(company, NOON)
    # Each wait as Teams asked (Retry-After, else the outbox's 2 s), one after the other.
    wait = float(retry_after) if retry_after is not None else 2.0
    assert time.monotonic() - started >= 2 * wait
    [reminder] = reminders(standin)
    assert reminder.conversation == ALICE.conversation
    throttled = standin.of("throttled")
    assert [(c.conversation, c.status) for c in throttled] == [(ALICE.conversation, status)] * 2
    assert all("Reminder: first touch" in card_text(c.card) for c in throttled)
    assert standin.of("send") == [reminder]
    message = the_message(company)
    assert (message.status, message.attempts, message.message_id) == (
        "sent",
        0,
        reminder.answered_id,
    )
    assert message.last_error  # why it was late, for `liaison outbox`


# ---------------------------------------------------------------- a permanent refusal


def backoff(attempts: int) -> timedelta:
    """The longest wait after the `attempts`-th failed try (bot/outbox/sender.py `backoff`:
    doubling, capped at 15 minutes, spread by jitter over its upper half)."""
    return timedelta(seconds=min(5.0 * 2**attempts, 900.0))


async def test_an_uninstalled_app_fails_for_good_then_retry(
    company: Store, standin: TeamsStandIn
) -> None:
    standin.uninstalled.add(ALICE.conversation)  # Teams answers 403 BotNotInConversationRoster
    at = NOON
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if attempt > 1:  # just before the backoff ends: not tried yet
            await tick(company, at - timedelta(seconds=2))
            assert len(standin.of("refused")) == attempt - 1
        await tick(company, at)
        message = the_message(company)
        assert message.attempts == attempt
        assert message.last_error and "BotNotInConversationRoster" in message.last_error
        if attempt < MAX_ATTEMPTS:
            assert message.status == "pending"
            wait = message.not_before - at
            assert backoff(attempt) / 2 <= wait <= backoff(attempt) + timedelta(seconds=1)
            at = message.not_before + timedelta(seconds=1)
    assert message.status == "failed"
    assert at < MONDAY_9 + timedelta(hours=4)  # all before the breach: one message in play
    refused = standin.of("refused")
    assert [(c.conversation, c.status) for c in refused] == [(ALICE.conversation, 403)] * 5
    assert standin.of("send") == []

    await tick(company, at + timedelta(minutes=10))  # failed for good: not tried again
    assert len(standin.of("refused")) == MAX_ATTEMPTS

    failed = await liaison(company, "outbox", "--status", "failed")
    assert message.key in failed and "BotNotInConversationRoster" in failed
    assert message.key not in await liaison(company, "outbox", "--status", "pending")

    assert "1 message back in line." in await liaison(company, "outbox", "retry")
    message = the_message(company)
    assert (message.status, message.attempts) == ("pending", 0)

    # Alice installs the app again: the next tick delivers the reminder. (`retry` puts it
    # back in line at the real time, so the clock may have moved on by then and this tick
    # send other notes too; the reminder goes exactly once.)
    standin.uninstalled.clear()
    await tick(company, max(message.not_before, at) + timedelta(seconds=1))
    [reminder] = reminders(standin)
    assert reminder.conversation == ALICE.conversation
    delivered = the_message(company, message.id)
    assert (delivered.status, delivered.message_id) == ("sent", reminder.answered_id)
