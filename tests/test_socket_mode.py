"""Slack Socket Mode end to end: the real `liaison socket` process, through Bolt's
AsyncSocketModeHandler and slack_sdk's aiohttp Socket Mode client, connected to the
local Slack stand-in's WebSocket (127.0.0.1 only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.core.business_time import Company
from handlers.ingest import LeadIn, store_leads
from storage import members
from storage.db import Store
from storage.models import EventKind, Lead, LeadEvent
from tests.slack_standin import SlackStandIn
from tests.support import eventually, fixture

ROOT = Path(__file__).parent.parent
APP_TOKEN = "xapp-1-A0CA5-1-test"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    standin.add_user("U0BOB", "Bob Brown", "bob@example.com")
    yield standin
    await standin.stop()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'liaison.db'}"


@contextmanager
def liaison_socket(
    db_url: str, slack: SlackStandIn, log_file: Path, *, signing_secret: str | None = None
) -> Iterator[Any]:
    """`liaison socket` as a real process, pointed at the stand-in; always terminated."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "LIAISON_", "MICROSOFT_"))
        and k.upper() not in PROXY_VARIABLES  # slack_sdk would send ws:// through a proxy
    }
    env.update(
        SLACK_BOT_TOKEN=slack.token,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=slack.api_url,
        LIAISON_DATABASE_URL=db_url,
    )
    if signing_secret is not None:
        env["SLACK_SIGNING_SECRET"] = signing_secret
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from app import main; main()", "socket"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def connected(slack: SlackStandIn, process: Any, log_file: Path) -> None:
    """Until the process holds a Socket Mode connection; fails fast if it died."""
    try:
        # A cold start (imports, migrations) takes about a second; allow for a slow machine.
        await eventually(lambda: slack.socket_open or process.poll() is not None, timeout=10.0)
    except AssertionError as error:
        raise AssertionError(f"no Socket Mode connection:\n{log_file.read_text()}") from error
    assert process.poll() is None, f"liaison socket exited:\n{log_file.read_text()}"


async def acked(slack: SlackStandIn, envelope_id: str) -> dict[str, Any]:
    ack: dict[str, Any] = await eventually(lambda: slack.ack_for(envelope_id), timeout=5.0)
    return ack


def text_of(params: dict[str, Any]) -> str:
    return json.dumps(params.get("blocks", []), ensure_ascii=False) + str(params.get("text", ""))


async def test_socket_command_answers_a_slash_command(
    slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "socket.log"
    with liaison_socket(db_url, slack, log_file, signing_secret="any") as process:
        await connected(slack, process, log_file)
        # The URL came from apps.connections.open, which only answers an xapp- token.
        assert len(slack.of("apps.connections.open")) == 1
        command = fixture("slack", "slash_command")
        command.update(user_id="U0BOB", user_name="bob", response_url=slack.response_url("help"))
        envelope_id = await slack.push("slash_commands", command)

        ack = await acked(slack, envelope_id)
        assert ack == {"envelope_id": envelope_id}  # an empty ack: the answer goes separately
        (answer,) = await eventually(lambda: slack.of("response_url"), timeout=5.0)
        assert answer["response_type"] == "ephemeral"
        assert "/liaison leaddef" in text_of(answer) and "/liaison help" in text_of(answer)
        assert slack.socket_messages == [ack]  # `hello` is not an envelope: nothing to ack
        # Bob was met for the first time: users.info made him a member.
        assert [c["user"] for c in slack.of("users.info")] == ["U0BOB"]
        assert process.poll() is None
    output = log_file.read_text()
    assert "Bolt app is running" in output and "Traceback" not in output, output


def seed_lead(db_url: str) -> int:
    """Alice (a rep, known by her Slack id) owns one freshly handed-off lead."""
    store = Store.open(db_url)
    now = datetime.now(UTC)
    try:
        with store.session() as session:
            members.upsert_member(
                session,
                now=now,
                email="alice@example.com",
                name="Alice Adams",
                slack_user_id="U0ALICE",
                role="rep",
            )
            lead_in = LeadIn.model_validate(
                {
                    "external_id": "S-1",
                    "name": "Jordan Patel",
                    "company": "Globex",
                    "owner_email": "alice@example.com",
                }
            )
            (outcome,), _ = store_leads(
                session, [lead_in], now=now, admin_channel=None, company=Company()
            )
        assert outcome.status == "created"
        return outcome.lead_id
    finally:
        store.engine.dispose()


def lead_state(db_url: str, lead_id: int) -> tuple[str, list[str]]:
    store = Store.open(db_url)
    try:
        with store.session() as session:
            lead = session.get(Lead, lead_id)
            assert lead is not None
            kinds = session.exec(select(LeadEvent.kind).where(LeadEvent.lead_id == lead_id)).all()
            return lead.state, list(kinds)
    finally:
        store.engine.dispose()


async def test_socket_command_accepts_a_lead_from_a_button(
    slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    lead_id = seed_lead(db_url)
    assert lead_state(db_url, lead_id)[0] == "handed_off"
    log_file = tmp_path / "socket.log"
    # No SLACK_SIGNING_SECRET: over Socket Mode nothing is signed, so none is needed.
    with liaison_socket(db_url, slack, log_file) as process:
        await connected(slack, process, log_file)
        payload = fixture("slack", "block_actions")
        payload["user"] = {
            "id": "U0ALICE",
            "username": "alice",
            "name": "alice",
            "team_id": "T0CAG",
        }
        payload["response_url"] = slack.response_url("alice-accept")
        payload["trigger_id"] = slack.trigger_id()
        payload["actions"][0].update(action_id="lead.accept", value=f"lead_id={lead_id}")
        envelope_id = await slack.push("interactive", payload)

        assert await acked(slack, envelope_id) == {"envelope_id": envelope_id}

        def accepted() -> bool:
            state, kinds = lead_state(db_url, lead_id)
            return state == "accepted" and EventKind.accepted.value in kinds

        await eventually(accepted, timeout=5.0)
        _, kinds = lead_state(db_url, lead_id)
        assert kinds.count(EventKind.accepted.value) == 1
        assert not slack.of("users.info")  # Alice was already known by her Slack id
        assert not slack.of("chat.update")  # her card was never posted, so none to update
        assert process.poll() is None
    assert "Traceback" not in log_file.read_text()
