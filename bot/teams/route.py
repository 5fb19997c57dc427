"""`POST /api/messages`: the activity's shape, its token, its tenant and its service URL
are checked before the Agents SDK's adapter runs the turn."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from jwt import PyJWTError
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import ClaimsIdentity
from pydantic import ValidationError

from bot.core.delivery import Bot
from bot.core.jsonlimits import loads_bounded
from bot.teams.adapter import TeamsAdapter, TokenUnavailable
from bot.teams.auth import KeysUnavailable
from bot.teams.trust import same_host
from bot.teams.turns import LiaisonTeamsBot
from storage.db import Store

log = logging.getLogger(__name__)

MAX_DEPTH = 64  # Teams activities (cards, entities) nest far less

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def activity_problem(body: Any) -> str | None:
    """Why `body` is not an activity this endpoint can take, or None."""
    if not isinstance(body, dict):
        return "the body must be one activity, a JSON object"

    def text(value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    conversation, sender, bot = body.get("conversation"), body.get("from"), body.get("recipient")
    checks = {
        "type": text(body.get("type")),
        "serviceUrl": text(body.get("serviceUrl"))
        and str(body["serviceUrl"]).startswith(("https://", "http://")),
        "conversation.id": isinstance(conversation, dict) and text(conversation.get("id")),
        "from.id": isinstance(sender, dict) and text(sender.get("id")),
        # The bot itself: every reply and reference names it (Teams always sends it).
        "recipient.id": isinstance(bot, dict) and text(bot.get("id")),
    }
    missing = [name for name, ok in checks.items() if not ok]
    if missing:
        return "the activity lacks a valid " + ", ".join(missing)
    try:
        Activity.model_validate(body)
    except ValidationError:
        return "some activity fields have the wrong type"
    return None


async def read_activity(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's activity JSON, or the 4xx answer for one that is not one activity."""
    if request.content_type != "application/json":
        return error(415, "send the activity as application/json")
    try:
        body = loads_bounded(await request.read(), max_depth=MAX_DEPTH)
    except ValueError as unreadable:  # not UTF-8, not JSON, or nested too deeply
        return error(400, str(unreadable))
    problem = activity_problem(body)
    return error(400, problem) if problem else cast(dict[str, Any], body)


def bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


async def authenticate(
    adapter: TeamsAdapter, body: dict[str, Any], header: str
) -> ClaimsIdentity | web.Response:
    """The Agents SDK's check of the Bot Framework / Entra token, anonymous in emulator mode:
    the caller's claims, or a 401 for any token problem (503 when the signing keys cannot be
    read). The token must also be for the activity's service URL."""
    if adapter.tokens is None:
        return ClaimsIdentity()
    token = bearer(header)
    why = "no bearer token"
    if token is not None:
        try:
            identity = await adapter.tokens.check(token)
        except KeysUnavailable as unreachable:
            log.warning("cannot fetch the token signing keys: %s", unreachable)
            response = error(503, "the token cannot be checked right now; try again")
            response.headers["Retry-After"] = "30"
            return response
        except (PyJWTError, ValueError) as invalid:
            why = type(invalid).__name__
        else:
            claimed = identity.get_claim_value("serviceurl")
            if claimed is None or same_host(str(claimed), str(body.get("serviceUrl") or "")):
                return identity
            why = "the token is for another serviceUrl"
    log.warning("Teams activity refused: the token is missing or invalid (%s)", why)
    return error(401, "the request's Bot Framework token is missing or invalid")


def make_route(adapter: TeamsAdapter, store: Store, bot: Bot) -> Route:
    """`POST /api/messages`: check the shape, authenticate, check the tenant and the
    service URL, and only then let the SDK's adapter run the activity."""
    handler = LiaisonTeamsBot(store, bot)
    # The SDK's Activity model logs every body it refuses at ERROR, with a traceback and the
    # sender's values; this route answers those with a 400 naming the problem instead.
    logging.getLogger("microsoft_agents.activity.activity").setLevel(logging.CRITICAL)

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await read_activity(request)
        if isinstance(body, web.Response):
            return body
        identity = await authenticate(adapter, body, request.headers.get("Authorization", ""))
        if isinstance(identity, web.Response):
            return identity
        problem = adapter.trust.problem(body)
        if problem is not None:
            log.warning("Teams activity refused: %s", problem)
            return error(403, problem)
        try:
            return await adapter.run(request, handler, identity)
        except TokenUnavailable as failed:
            # Nothing ran: the turn needs the bot's token before it starts. Teams retries.
            log.warning("Teams activity not run: no token for the connector (%s)", failed)
            response = error(503, "Liaison cannot get its Teams token right now; try again")
            response.headers["Retry-After"] = "30"
            return response

    return messages
