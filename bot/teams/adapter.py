"""The Agents SDK's aiohttp `CloudAdapter`, set up for Liaison: connector clients whose calls
carry the bot's MSAL token and time out, conversation references that read the shape
botbuilder stored, and what Teams last reached the bot from."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import requests
from aiohttp import web
from microsoft_agents.activity import (
    Activity,
    ActivityEventNames,
    ActivityTypes,
    ConversationAccount,
    ConversationReference,
)
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.aiohttp._aiohttp_request_adapter import AiohttpRequestAdapter
from microsoft_agents.hosting.core import ActivityHandler, ClaimsIdentity, TurnContext
from microsoft_agents.hosting.core.connector import ConnectorClientBase, UserTokenClientBase
from microsoft_agents.hosting.core.connector.client import UserTokenClient
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

from bot.core.settings import TeamsMode
from bot.core.text import text_for
from bot.teams.auth import (
    BOT_FRAMEWORK,
    SigningKeys,
    TimedMsalAuth,
    TokenCheck,
    Where,
    configuration,
)
from bot.teams.trust import service_url_problem, tenant_problem
from storage.db import unavailable

if TYPE_CHECKING:
    from bot.core.settings import Settings

log = logging.getLogger(__name__)

CHANNEL_ID = "msteams"
ERROR_TYPE = "application/vnd.microsoft.error"  # an invoke answer that reports a failure


class TokenUnavailable(Exception):
    """The bot's own token for the connector could not be had (refused or no answer)."""


class ConnectorError(Exception):
    """The connector answered a call with an HTTP error. `response` carries its `status`
    and `headers` (Retry-After), which the outbox reads to tell a pause from a refusal."""

    def __init__(self, error: aiohttp.ClientResponseError) -> None:
        super().__init__(f"Teams connector answered {error.status}: {_reason(error.message)}")
        self.response = error


def _reason(body: str) -> str:
    """The connector's error code and message from its JSON answer, else the body's start
    (a gateway's HTML page, say)."""
    try:
        found = json.loads(body).get("error") or {}
        return f"{found['code']}: {found.get('message', '')}".strip()
    except (ValueError, AttributeError, KeyError, TypeError):
        return " ".join(body.split())[:200]


# ---------------------------------------------------------------- references


def load_reference(data: Mapping[str, Any]) -> ConversationReference:
    """A stored conversation reference, in the SDK's shape or the one botbuilder 4.17 wrote
    before (it spelt the conversation's tenant `tenantID`)."""
    raw = copy.deepcopy(dict(data))
    conversation = raw.get("conversation")
    if isinstance(conversation, dict) and "tenantID" in conversation:
        conversation.setdefault("tenantId", conversation.pop("tenantID"))
    return ConversationReference.model_validate(raw)


def dump_reference(reference: ConversationReference) -> dict[str, Any]:
    dumped: dict[str, Any] = reference.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


# ---------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class Trust:
    """What an activity must satisfy before Liaison acts on it or calls its serviceUrl."""

    mode: TeamsMode
    tenant_id: str = ""
    extra_hosts: frozenset[str] = frozenset()

    def problem(self, body: Mapping[str, Any]) -> str | None:
        """Why an (authenticated) activity must be refused, or None."""
        return tenant_problem(body, self.tenant_id) or service_url_problem(
            str(body.get("serviceUrl") or ""), mode=self.mode, extra_hosts=self.extra_hosts
        )


class ConnectorClients:
    """The SDK's client factory for Liaison: a Teams connector client per turn whose calls
    carry the bot's token (none in emulator mode) and time out after `timeout` seconds.
    No user-token client calls out (Liaison signs nobody in), so none asks for a token."""

    def __init__(self, tokens: TimedMsalAuth | None, timeout: float) -> None:
        self.tokens = tokens
        self.timeout = timeout
        # The SDK closes each turn's session when the turn ends; the connections live on in
        # this pool, shared by every turn, so a burst of sends reuses warm TLS connections.
        self._pool: aiohttp.TCPConnector | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None

    def pool(self) -> aiohttp.TCPConnector:
        """The connection pool every turn's session borrows, one per event loop (a CLI
        command may run several loops one after the other)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.closed or self._pool_loop is not loop:
            self._pool = aiohttp.TCPConnector(limit=64, limit_per_host=32, keepalive_timeout=30)
            self._pool_loop = loop
        return self._pool

    async def close(self) -> None:
        """Close the pooled connections (at shutdown)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def create_connector_client(
        self,
        context: TurnContext | None,
        claims_identity: ClaimsIdentity,
        service_url: str,
        audience: str,
        scopes: list[str] | None = None,
        use_anonymous: bool = False,
    ) -> ConnectorClientBase:
        token = ""
        if self.tokens is not None:
            try:
                token = await self.tokens.get_access_token(
                    BOT_FRAMEWORK, [f"{BOT_FRAMEWORK}/.default"]
                )
            except (ValueError, requests.RequestException, TimeoutError) as failed:
                # MSAL's refusal (a bad or expired credential) or no answer in time.
                raise TokenUnavailable(type(failed).__name__) from failed
        session = aiohttp.ClientSession(
            base_url=service_url if service_url.endswith("/") else service_url + "/",
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=self.pool(),
            connector_owner=False,  # the turn's end closes the session, not the pool
        )
        return TeamsConnectorClient(endpoint=service_url, token=token, session=session)

    async def create_user_token_client(
        self, context: TurnContext, claims_identity: ClaimsIdentity, use_anonymous: bool = False
    ) -> UserTokenClientBase:
        app_id = claims_identity.get_app_id() or "emulator"
        return UserTokenClient(endpoint=BOT_FRAMEWORK, token="", app_id=app_id)


class _Authenticated(AiohttpRequestAdapter):
    """The request as the SDK reads it, with the identity the route's token check found."""

    def __init__(self, request: web.Request, identity: ClaimsIdentity) -> None:
        super().__init__(request)
        self.identity = identity

    def get_claims_identity(self) -> ClaimsIdentity:
        return self.identity


class TeamsAdapter(CloudAdapter):
    """CloudAdapter that checks tokens with Liaison's settings and remembers where Teams
    last reached the bot from.

    Posting to a channel needs the connector's service URL; Teams gives it on every
    authenticated activity and says any URL it has given stays valid.
    """

    def __init__(
        self,
        clients: ConnectorClients,
        app_id: str,
        trust: Trust,
        tokens: TokenCheck | None,
        call_timeout: float,
    ) -> None:
        super().__init__(channel_service_client_factory=clients)
        self.connector_clients = clients
        self.app_id = app_id
        self.trust = trust
        self.tokens = tokens  # None: emulator mode, no authentication
        self.last_seen: ConversationReference | None = None
        # Seconds a proactive send or update may take in all (below the outbox lease).
        self.call_timeout = call_timeout
        self.on_turn_error = on_turn_error

    def remember(self, reference: ConversationReference | None) -> bool:
        """Keep `reference` as where Teams reaches the bot; True when that is news (a
        service URL or bot account not seen before), worth storing for other processes."""
        if reference is None or not reference.service_url:
            return False
        seen = self.last_seen
        self.last_seen = reference
        return seen is None or (seen.service_url, getattr(seen.agent, "id", None)) != (
            reference.service_url,
            getattr(reference.agent, "id", None),
        )

    def channel_reference(self, channel: str, tenant_id: str) -> ConversationReference:
        """A reference to a channel (or chat) conversation by id, for proactive posts."""
        seen = self.last_seen
        if seen is None:
            raise LookupError(
                f"cannot post to Teams conversation {channel}: no Teams service "
                "URL is known yet (one arrives with any Teams activity)"
            )
        conversation = ConversationAccount(
            id=channel, is_group=True, conversation_type="channel", tenant_id=tenant_id or None
        )
        return ConversationReference(
            channel_id=CHANNEL_ID,
            service_url=seen.service_url,
            agent=seen.agent,
            conversation=conversation,
        )

    async def run(
        self, request: web.Request, agent: ActivityHandler, identity: ClaimsIdentity
    ) -> web.Response:
        """Run the request's activity through the SDK as `identity` (checked by the route)."""
        answer = await self.process_request(_Authenticated(request, identity), agent)
        response: web.Response = self._to_aiohttp_response(answer)
        return response

    def proactive_identity(self) -> ClaimsIdentity:
        """Who proactive turns run as: the bot's app id, or anonymous in emulator mode."""
        if self.tokens is None:
            return ClaimsIdentity()
        identity: ClaimsIdentity = self.create_claims_identity(self.app_id)
        return identity


def make_adapter(settings: Settings) -> TeamsAdapter:
    """The adapter for the configured mode: authenticated with an app id, or emulator mode
    (no authentication) only when LIAISON_TEAMS_EMULATOR asks for it explicitly."""
    mode = settings.teams_mode
    if mode is TeamsMode.off:
        raise ValueError("Teams is off: set MICROSOFT_APP_ID (or LIAISON_TEAMS_EMULATOR=1)")
    if problem := settings.teams_credentials_problem():
        raise ValueError(problem)
    where = Where(settings.call_timeout, settings.teams_auth_url.rstrip("/"))
    msal: TimedMsalAuth | None = None
    check: TokenCheck | None = None
    if mode is TeamsMode.emulator:
        log.warning(
            "TEAMS EMULATOR MODE: /api/messages accepts UNAUTHENTICATED activities from "
            "loopback connectors; never run this where anyone else can reach the server"
        )
    else:
        if settings.teams_emulator:
            log.warning("LIAISON_TEAMS_EMULATOR is ignored: MICROSOFT_APP_ID is set, tokens count")
        config = configuration(settings)
        msal = TimedMsalAuth(config, where)
        check = TokenCheck(config, SigningKeys(where))
    return TeamsAdapter(
        ConnectorClients(msal, settings.call_timeout + 1),
        settings.microsoft_app_id,
        Trust(mode, settings.microsoft_app_tenant_id, settings.extra_service_hosts),
        check,
        settings.call_timeout,
    )


def _is_proactive(activity: Activity) -> bool:
    return bool(
        activity.type == ActivityTypes.event
        and activity.name == ActivityEventNames.continue_conversation
    )


async def on_turn_error(turn_context: TurnContext, error: Exception) -> None:
    """Log the failure and tell the person briefly; proactive sends re-raise to the caller."""
    activity = turn_context.activity
    if _is_proactive(activity):
        if isinstance(error, aiohttp.ClientResponseError):
            raise ConnectorError(error) from error
        raise error
    conversation = activity.conversation.id if activity.conversation else "?"
    if unavailable(error):
        # The server's middleware answers 503 with Retry-After; the person hears why.
        log.info("database unreachable: Teams %s in %s refused", activity.type, conversation)
        try:
            await turn_context.send_activity(text_for("database_down"))
        except (aiohttp.ClientError, TimeoutError):
            log.warning("could not tell the user the database is away in %s", conversation)
        raise error
    log.error(
        "Teams turn failed: %s activity %s in %s",
        activity.type,
        activity.id,
        conversation,
        exc_info=error,
    )
    try:
        await turn_context.send_activity(text_for("turn_failed"))
    except (aiohttp.ClientError, TimeoutError):
        log.warning("could not tell the user about the failed turn in %s", conversation)
    if activity.type == ActivityTypes.invoke and not turn_context.turn_state.get(
        TeamsAdapter.INVOKE_RESPONSE_KEY
    ):
        # Teams waits for the invoke's answer: the error answer Universal Actions define
        # (HTTP 200, the failure inside), not the SDK's bare 501.
        failure = {"code": "InternalServerError", "message": text_for("turn_failed")}
        body = {"statusCode": 500, "type": ERROR_TYPE, "value": failure}
        answer = Activity(type=ActivityTypes.invoke_response, value={"status": 200, "body": body})
        await turn_context.send_activity(answer)
