"""Slack's preflight: the token is valid (`auth.test`), the app holds the scopes
manifests/slack.yaml asks for (Slack's `x-oauth-scopes` answer header), the signing secret
is set, and every configured Slack channel exists with the bot in it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.checks import PREFLIGHT_TIMEOUT, Check

if TYPE_CHECKING:
    from bot.core.settings import Settings

# The bot scopes of manifests/slack.yaml (tests/test_manifests.py keeps the two the same).
SCOPES = frozenset(
    {
        "channels:history",
        "chat:write",
        "commands",
        "files:write",
        "groups:history",
        "im:history",
        "im:write",
        "users:read",
        "users:read.email",
    }
)
# Slack's answers that mean the token itself is no good (the app cannot work at all).
REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
NO_ANSWER = (aiohttp.ClientError, TimeoutError, OSError)


async def slack_checks(
    settings: Settings, channels: Sequence[tuple[str, str]], *, socket_mode: bool = False
) -> list[Check]:
    """The Slack lines; `channels` are (kind, Slack channel id) pairs to look at. Socket Mode
    takes no HTTP requests, so it needs no signing secret."""
    if not settings.slack_enabled:
        return [Check("Slack", None, "off (SLACK_BOT_TOKEN is not set)")]
    secret = settings.slack_signing_secret
    if secret is not None and secret.get_secret_value():
        signing = Check("Slack signing secret", True, "set")
    elif socket_mode:
        signing = Check("Slack signing secret", None, "not set: only Socket Mode can run")
    else:
        signing = Check(
            "Slack signing secret",
            False,
            "SLACK_SIGNING_SECRET is not set: every request to /slack/events would be refused "
            "(copy it from the app's Basic Information page)",
            fatal=True,
        )
    assert settings.slack_bot_token is not None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=int(PREFLIGHT_TIMEOUT),
    )
    token, scopes = await _token(client)
    if token.ok is not True:
        return [token, scopes, signing]
    found = await asyncio.gather(*(_channel(client, kind, id_) for kind, id_ in channels))
    return [token, scopes, signing, *found]


async def _token(client: AsyncWebClient) -> tuple[Check, Check]:
    skipped = Check("Slack scopes", None, "not checked (no valid token)")
    try:
        answer = await client.auth_test()
    except SlackApiError as refused:
        error = str(refused.response.get("error", "refused"))
        fatal = error in REFUSED
        fix = "copy the Bot User OAuth Token (xoxb-…) again from the app's OAuth page"
        return Check("Slack token", False, f"Slack refused it ({error}): {fix}", fatal), skipped
    except NO_ANSWER as error:
        why = type(error).__name__
        return Check("Slack token", False, f"Slack did not answer ({why}); retry later"), skipped
    token = Check("Slack token", True, f"valid for {answer.get('team')} as @{answer.get('user')}")
    headers = {k.lower(): v for k, v in (answer.headers or {}).items()}
    granted = {s.strip() for s in str(headers.get("x-oauth-scopes", "")).split(",") if s.strip()}
    missing = sorted(SCOPES - granted)
    if missing:
        scopes = Check(
            "Slack scopes",
            False,
            f"missing {', '.join(missing)}: add them (manifests/slack.yaml) and reinstall the app",
        )
    else:
        scopes = Check("Slack scopes", True, f"all {len(SCOPES)} the manifest asks for")
    return token, scopes


async def _channel(client: AsyncWebClient, kind: str, channel: str) -> Check:
    name = f"{kind} channel (slack:{channel})"
    try:
        await client.conversations_history(channel=channel, limit=1)
    except SlackApiError as refused:
        error = str(refused.response.get("error", "refused"))
        if error == "not_in_channel":
            return Check(name, False, "the bot is not in it: /invite @Liaison there")
        if error == "channel_not_found":
            return Check(
                name,
                False,
                "no such channel (or a private one without the bot): "
                f"`liaison channels set {kind} slack:C…` with the right id",
            )
        return Check(name, False, f"Slack refused to look ({error})")
    except NO_ANSWER as error:
        return Check(name, False, f"Slack did not answer ({type(error).__name__})")
    return Check(name, True, "exists, the bot is in it")
