"""CLI commands that talk to Slack reuse one HTTP session (and so its connections) for all
their calls, as `serve` does, instead of slack_sdk's session and handshake per call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import app
from bot.core.messages import Card, card_to_dict
from bot.web.server import SCHEDULER
from storage import members, outbox
from storage.db import Store
from storage.models import OutboxMessage
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, slack_settings


def owe_two_notes(url: str) -> None:
    """Two DMs to a rep who always works, due now."""
    store = Store.open(url)
    now = datetime.now(UTC)
    with store.session() as session:
        rep = members.upsert_member(
            session,
            now=now,
            email="rep@example.com",
            name="Rep",
            slack_user_id="U0REP",
            work_start="00:00",
            work_end="24:00",
            workdays="0,1,2,3,4,5,6",
        )
        session.flush()
        for n in range(2):
            outbox.enqueue(
                session,
                message=OutboxMessage(
                    key=f"note:{n}",
                    member_id=rep.id,
                    card=card_to_dict(Card(title=f"Note {n}")),
                    not_before=now - timedelta(minutes=1),
                    created_at=now,
                ),
            )
    store.engine.dispose()


async def test_a_tick_sends_its_messages_on_one_connection(
    tmp_path: Path, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    owe_two_notes(url)
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "LIAISON_DATABASE_URL": url,
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": "x",
        "SLACK_API_URL": slack.api_url,
    }.items():
        monkeypatch.setenv(name, value)
    result = await asyncio.to_thread(CliRunner().invoke, app.cli, ["tick"])
    assert result.exit_code == 0, result.output
    assert "2 sent" in result.output
    assert [p["text"] for p in slack.of("chat.postMessage")] == ["Note 0", "Note 1"]
    assert len(slack.peers) >= 2 and len(set(slack.peers)) == 1, slack.peers


async def test_the_server_sends_on_one_connection_and_closes_it_when_stopped(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    Store.open(url).engine.dispose()  # the schema, then the notes
    owe_two_notes(url)
    server = await LiveServer(slack_settings(url, slack)).start()
    client = server.app[SCHEDULER].sender.deliverer.messengers["slack"].client
    try:
        server.app[SCHEDULER].wake()
        await server.settle()
        assert [p["text"] for p in slack.of("chat.postMessage")] == ["Note 0", "Note 1"]
        assert len(slack.peers) >= 2 and len(set(slack.peers)) == 1, slack.peers
        session = client.session
        assert session is not None and not session.closed
    finally:
        await server.stop()
    assert session.closed and client.session is None
