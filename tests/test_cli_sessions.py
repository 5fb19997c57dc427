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
from storage import queries
from storage.db import Store
from storage.models import OutboxMessage
from tests.slack_standin import SlackStandIn


async def test_a_tick_sends_its_messages_on_one_connection(
    tmp_path: Path, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    store = Store.open(url)
    now = datetime.now(UTC)
    with store.session() as session:
        rep = queries.upsert_member(
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
            queries.enqueue(
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
