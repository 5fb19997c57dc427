"""slack_sdk's Web API client, keeping Slack's app-wide rate limits per method.

Slack counts most methods per app per workspace, in tiers (`conversations.open`,
`users.lookupByEmail`, `chat.update`, `conversations.history`…). When it answers one of them
429, that method waits out its `Retry-After` for the whole process: calls of it meanwhile fail
at once with the same 429 (`Throttled`), without reaching Slack, so the outbox puts their
messages back in line for when the wait is over and lookups are retried later. A
`chat.postMessage` 429 is a conversation's own pace: the outbox holds back only that lane.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.core.pacing import MethodGate

# Paced per conversation by the outbox, not app-wide.
PER_CONVERSATION = frozenset({"chat.postMessage"})
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 does not say


class PacedWebClient(AsyncWebClient):
    """An AsyncWebClient that remembers Slack's 429s per method (see the module)."""

    def __init__(self, *args: Any, gate: MethodGate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate or MethodGate()

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        app_wide = api_method not in PER_CONVERSATION
        wait = self.gate.blocked_for(api_method) if app_wide else 0.0
        if wait > 0:
            raise Throttled(self, api_method, wait)
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            if app_wide and error.response.status_code == 429:
                self.gate.block(api_method, retry_after(error.response.headers))
            raise


def retry_after(headers: Any) -> float:
    """Slack's `Retry-After` in seconds (a default when missing or unreadable)."""
    value = None
    if headers:
        value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else DEFAULT_RETRY_AFTER
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


class Throttled(SlackApiError):
    """Slack asked this method to wait, and the wait is not over: the 429 it would answer."""

    def __init__(self, client: AsyncWebClient, method: str, seconds: float) -> None:
        response = AsyncSlackResponse(
            client=client,
            http_verb="POST",
            api_url=f"{client.base_url}{method}",
            req_args={},
            data={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(math.ceil(seconds))},
            status_code=429,
        )
        message = f"{method} is rate limited for {seconds:.1f} s more"
        super().__init__(message, response)  # type: ignore[no-untyped-call]


@asynccontextmanager
async def shared_session(client: AsyncWebClient, timeout: float) -> AsyncIterator[None]:
    """All of `client`'s Web API calls meanwhile on one HTTP session, so they reuse
    connections (without one, slack_sdk opens a session, and a TLS connection, per call).
    slack_sdk applies its own timeout only to sessions it makes: this one carries `timeout`
    (seconds), so no call outlives an outbox lease. A client that has a session keeps it."""
    if client.session is not None:
        yield
        return
    client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        yield
    finally:
        await client.session.close()
        client.session = None
