"""`liaison check` against the Slack, connector and Microsoft token stand-ins: one line per
thing, ✓ or ✗ with the fix; `serve` refuses to start on a fatal one, with that line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from microsoft_agents.activity import ChannelAccount, ConversationAccount, ConversationReference
from typer.testing import CliRunner, Result

import app
from bot.slack.preflight import SCOPES
from bot.teams.adapter import dump_reference
from bot.teams.messenger import SERVICE_KEY
from storage import channels
from storage.db import Store
from storage.schema import revisions
from tests.slack_scopes import manifest_scopes
from tests.slack_standin import SlackStandIn
from tests.teams_auth_standin import MicrosoftAuthStandIn
from tests.teams_standin import TeamsStandIn

ROOT = Path(__file__).parent.parent
APP_ID = "5a3c2f71-0d6e-4b8a-9c1e-7f2b3d4e5a6b"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SECRET = "not-a-real-secret"


@pytest.fixture
async def connector() -> AsyncIterator[TeamsStandIn]:
    standin = await TeamsStandIn().start()
    yield standin
    await standin.stop()


@pytest.fixture
def microsoft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MicrosoftAuthStandIn]:
    auth = MicrosoftAuthStandIn(tmp_path, app_id=APP_ID, secret=SECRET, tenant=TENANT).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(auth.ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(auth.ca_file))
    yield auth
    auth.stop()


def environment(url: str, slack: SlackStandIn, **more: str) -> dict[str, str]:
    return {
        "LIAISON_DATABASE_URL": url,
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": "a-signing-secret",
        "SLACK_API_URL": slack.api_url,
        "LIAISON_WEBHOOK_SECRET": "a-webhook-secret",
        "MICROSOFT_APP_ID": "",
        "LIAISON_TEAMS_EMULATOR": "0",
        **more,
    }


async def check(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Result:
    """`liaison check` in a thread (the stand-ins answer from this event loop)."""
    monkeypatch.chdir(cwd)  # no stray .env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return await asyncio.to_thread(CliRunner().invoke, app.cli, ["check"])


def lines(result: Result) -> dict[str, str]:
    """Each line by its name (the text between the mark and the colon)."""
    found = {}
    for line in result.output.splitlines():
        mark, _, rest = line.partition(" ")
        assert mark in ("✓", "✗", "·"), line
        name, _, detail = rest.partition(": ")
        found[name] = f"{mark} {detail}"
    assert "database" in found, (result.output, result.exception)
    return found


def test_the_preflight_knows_the_manifests_scopes() -> None:
    assert manifest_scopes() == SCOPES


async def test_a_missing_scope_and_channels_the_bot_cannot_use_are_named(
    tmp_path: Path,
    slack: SlackStandIn,
    connector: TeamsStandIn,
    microsoft: MicrosoftAuthStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite:///{tmp_path / 'check.db'}"
    slack.scopes = manifest_scopes() - {"users:read.email"}
    slack.channels = {"C0DIGEST": True, "C0WINS": False}
    connector.add_conversation("19:handoff@thread.tacv2")
    connector.add_conversation("19:removed@thread.tacv2")
    connector.uninstalled.add("19:removed@thread.tacv2")
    connector.token_valid = microsoft.valid
    store = Store.open(url)
    with store.session() as session:
        for kind, target in (
            ("digest", "slack:C0DIGEST"),
            ("wins", "slack:C0WINS"),
            ("admin", "slack:C0GONE"),
            ("handoff", "teams:19:handoff@thread.tacv2"),
            ("insights", "teams:19:removed@thread.tacv2"),
        ):
            channels.set_channel(session, kind=kind, target=target)
        reference = ConversationReference(
            channel_id="msteams",
            service_url=connector.service_url,
            agent=ChannelAccount(id=f"28:{APP_ID}"),
            conversation=ConversationAccount(id="19:handoff@thread.tacv2"),
        )  # as the bot keeps it from the last activity Teams sent
        channels.set_setting(session, key=SERVICE_KEY, value=json.dumps(dump_reference(reference)))
    store.engine.dispose()
    env = environment(
        url,
        slack,
        MICROSOFT_APP_ID=APP_ID,
        MICROSOFT_APP_PASSWORD=SECRET,
        MICROSOFT_APP_TENANT_ID=TENANT,
        LIAISON_TEAMS_AUTH_URL=microsoft.url,
    )
    result = await check(env, monkeypatch, tmp_path)
    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["database"].startswith("✓"), result.output and "(the latest)" in found["database"]
    assert found["Slack token"] == "✓ valid for Example as @liaison"
    assert found["Slack scopes"].startswith("✗ missing users:read.email")
    assert found["Slack signing secret"] == "✓ set"
    assert found["digest channel (slack:C0DIGEST)"] == "✓ exists, the bot is in it"
    assert found["wins channel (slack:C0WINS)"].startswith("✗ the bot is not in it")
    assert found["admin channel (slack:C0GONE)"].startswith("✗ no such channel")
    assert found["Teams credentials"] == "✓ a token for the Bot Framework was issued"
    assert found["handoff channel (teams:19:handoff@thread.tacv2)"].startswith("✓")
    assert found["insights channel (teams:19:removed@thread.tacv2)"].startswith(
        "✗ the bot is not in it"
    )
    assert found["lead webhook secret"].startswith("✓")
    assert not connector.of("unauthorized")  # the connector was asked with a real token

    # Everything put right: all ✓, exit 0.
    slack.scopes = manifest_scopes()
    slack.channels = {"C0DIGEST": True, "C0WINS": True, "C0GONE": True}
    connector.uninstalled.clear()
    result = await check(env, monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    assert all(line.startswith("✓") for line in result.output.splitlines()), result.output


async def test_a_refused_token_an_old_schema_and_no_webhook_secret(
    tmp_path: Path, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    env = environment(url, slack, SLACK_BOT_TOKEN="xoxb-revoked", LIAISON_WEBHOOK_SECRET="")
    result = await check(env, monkeypatch, tmp_path)
    assert result.exit_code == 1
    found = lines(result)
    assert found["database"].startswith("✗") and "no schema yet" in found["database"]
    assert "liaison db upgrade" in found["database"]
    assert found["Slack token"].startswith("✗ Slack refused it (invalid_auth)")
    assert found["Slack scopes"].startswith("·")
    assert found["lead webhook secret"].startswith("✗ LIAISON_WEBHOOK_SECRET is not set")
    assert found["Teams"] == "· off (MICROSOFT_APP_ID is not set)"  # checked without a store
    assert revisions(url)[0] is None  # a check migrates nothing
    assert not slack.of("conversations.history")


def serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LIAISON_"))}
    return subprocess.run(
        [sys.executable, "-c", "from app import main; main()", "serve", "--port", "0"],
        env={**full, **env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_serve_refuses_to_start_with_a_token_slack_refuses(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    env = environment(f"sqlite:///{tmp_path / 's.db'}", slack, SLACK_BOT_TOKEN="xoxb-revoked")
    done = await asyncio.to_thread(serve, env, tmp_path)
    assert done.returncode == 1
    assert done.stdout.strip() == (
        "✗ Slack token: Slack refused it (invalid_auth): copy the Bot User OAuth Token "
        "(xoxb-…) again from the app's OAuth page"
    )
    assert "Traceback" not in done.stderr


async def test_serve_refuses_to_start_without_the_signing_secret(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    env = environment(f"sqlite:///{tmp_path / 's.db'}", slack, SLACK_SIGNING_SECRET="")
    done = await asyncio.to_thread(serve, env, tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("✗ Slack signing secret: SLACK_SIGNING_SECRET is not set")
