"""Teams' preflight: the app's credentials get a token for the Bot Framework, and every
configured Teams conversation is one the bot is in (asked of the connector)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiohttp
import requests

from bot.core.checks import PREFLIGHT_TIMEOUT, Check
from bot.core.settings import TeamsMode
from bot.teams.adapter import load_reference
from bot.teams.auth import BOT_FRAMEWORK, BOT_FRAMEWORK_SCOPE, TimedMsalAuth, Where, configuration
from bot.teams.messenger import SERVICE_KEY

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from storage.db import Store

NO_ANSWER = (aiohttp.ClientError, requests.RequestException, TimeoutError, OSError)


async def teams_checks(
    settings: Settings, store: Store | None, channels: Sequence[tuple[str, str]]
) -> list[Check]:
    """The Teams lines; `channels` are (kind, conversation id) pairs to look at (not without
    a store: where Teams reaches the bot is kept there)."""
    mode = settings.teams_mode
    if mode is TeamsMode.off:
        return [Check("Teams", None, "off (MICROSOFT_APP_ID is not set)")]
    if mode is TeamsMode.emulator:
        return [Check("Teams", None, "emulator mode: no credentials to check")]
    where = Where(PREFLIGHT_TIMEOUT, settings.teams_auth_url.rstrip("/"))
    tokens = TimedMsalAuth(configuration(settings), where)
    try:
        token = await tokens.get_access_token(BOT_FRAMEWORK, [BOT_FRAMEWORK_SCOPE])
    except ValueError as refused:  # MSAL's refusal: the credential itself is wrong
        return [
            Check(
                "Teams credentials",
                False,
                f"no token for the Bot Framework ({' '.join(str(refused).split())[:160]}): "
                "check MICROSOFT_APP_ID, the password or certificate, and the tenant",
                fatal=True,
            )
        ]
    except NO_ANSWER as error:
        why = type(error).__name__
        return [Check("Teams credentials", False, f"the token service did not answer ({why})")]
    found = [Check("Teams credentials", True, "a token for the Bot Framework was issued")]
    if store is None:
        return found
    service = await asyncio.to_thread(_service_url, store)
    for kind, conversation in channels:
        found.append(await _conversation(service, token, kind, conversation))
    return found


def _service_url(store: Store) -> str | None:
    from storage import channels as stored_channels

    with store.session() as session:
        stored = stored_channels.get_setting(session, key=SERVICE_KEY)
    return load_reference(json.loads(stored)).service_url if stored else None


async def _conversation(service: str | None, token: str, kind: str, conversation: str) -> Check:
    name = f"{kind} channel (teams:{conversation})"
    if not service:
        return Check(
            name, False, "no Teams activity seen yet: add the bot to the team, then check again"
        )
    url = f"{service.rstrip('/')}/v3/conversations/{conversation}/members"
    timeout = aiohttp.ClientTimeout(total=PREFLIGHT_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, headers={"Authorization": f"Bearer {token}"}) as answer,
        ):
            status = answer.status
    except NO_ANSWER as error:
        return Check(name, False, f"the Teams connector did not answer ({type(error).__name__})")
    if status == 200:
        return Check(name, True, "exists, the bot is in it")
    if status == 403:
        return Check(name, False, "the bot is not in it: add the Liaison app to that team")
    if status == 404:
        return Check(
            name,
            False,
            f"no such conversation: `liaison channels set {kind} teams:<id>` with the right id",
        )
    return Check(name, False, f"the Teams connector answered {status}")
