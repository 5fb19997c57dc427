"""The Microsoft Teams adapter: Bot Framework activities in, Adaptive Cards out.

`POST /api/messages` takes activities through botbuilder's `CloudAdapter`; messages, card
submits and form submits become `Interaction`s for the neutral bot. Every member the bot
meets is remembered with their personal conversation reference, which is what proactive
messages (handoff cards, answers, nudges) are sent with later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import requests
from aiohttp import web
from botbuilder.core import ActivityHandler, TurnContext, serializer_helper
from botbuilder.core.teams import TeamsInfo
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import (
    Activity,
    ActivityEventNames,
    ActivityTypes,
    Attachment,
    ChannelAccount,
    ConversationAccount,
    ConversationReference,
)
from botframework.connector.auth import JwtTokenExtractor, MicrosoftAppCredentials
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata
from msal import ConfidentialClientApplication  # type: ignore[import-untyped]
from msrest.exceptions import ClientException, HttpOperationError
from msrest.pipeline.universal import RawDeserializer
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.buttons import decode
from bot.delivery import Bot, Posted
from bot.effects import Effect, FormErrors, Notify, Owed, Post, UpdateCards
from bot.interaction import Interaction, Kind, Where
from bot.jsonlimits import loads_bounded
from bot.messages import Card, Form, Report
from bot.settings import Settings
from bot.teams_cards import (
    FORM_KEY,
    INPUTS_KEY,
    SELECT_KEY,
    card_attachment,
    form_attachment,
    plain,
    report_card,
)
from bot.teams_trust import TeamsMode, service_url_problem, tenant_problem
from bot.text import say
from digests.owing import owe
from digests.pacing import TEAMS_APP_BURST, TEAMS_APP_RATE, Spacing
from storage import queries
from storage.db import Store, unavailable
from storage.models import CardLocation, Member, Role

log = logging.getLogger(__name__)

PLATFORM = "teams"
CHANNEL_ID = "msteams"
MAX_DEPTH = 64  # Teams activities (cards, entities) nest far less
SERVICE_KEY = "teams_service"  # company_settings: the last reference Teams reached us with

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------- adapter


@dataclass(frozen=True)
class BotConfig:
    """The configuration object botbuilder's credential factory reads (APP_* attributes)."""

    APP_ID: str
    APP_PASSWORD: str = field(repr=False)
    APP_TENANTID: str
    APP_TYPE: str


BOT_FRAMEWORK = "https://api.botframework.com"  # the token issuer and the outgoing scope


@dataclass(frozen=True)
class PrivateCloudConfig(BotConfig):
    """The same, with the token service at `LIAISON_TEAMS_AUTH_URL` instead of Microsoft's
    (a private cloud, or the tests' local stand-in): Entra's token endpoint under
    `<url>/<tenant>` and the Bot Framework's signing keys under `<url>/v1/`."""

    AUTH_URL: str = ""

    @property
    def TO_CHANNEL_FROM_BOT_LOGIN_URL(self) -> str:
        return f"{self.AUTH_URL}/{self.APP_TENANTID or 'botframework.com'}"

    @property
    def TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL(self) -> str:
        return f"{self.AUTH_URL}/v1/.well-known/openidconfiguration"

    TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL = TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL
    TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = BOT_FRAMEWORK
    TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = BOT_FRAMEWORK
    VALIDATE_AUTHORITY = False

    @property
    def OAUTH_URL(self) -> str:
        return self.AUTH_URL


class TimedCredentials(ConfigurationServiceClientCredentialFactory):  # type: ignore[misc]
    """botbuilder's credentials, with an MSAL client whose token requests time out
    (botbuilder's own has none, and asks on the event loop). With a private token service
    (`private`), MSAL is told it is not an Entra host to discover (MSAL would ask
    login.microsoftonline.com about it). One credential per audience, so MSAL's token cache
    is reused across connector clients."""

    def __init__(self, config: BotConfig, *, timeout: float, private: bool = False) -> None:
        super().__init__(config)
        self.config = config
        self.timeout = timeout
        self.private = private
        self.made: dict[tuple[str, str, str], Any] = {}

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Any:
        key = (app_id, oauth_scope, login_endpoint)
        if key not in self.made:
            credentials = await super().create_credentials(
                app_id, oauth_scope, login_endpoint, validate_authority
            )
            if isinstance(credentials, MicrosoftAppCredentials) and credentials.microsoft_app_id:
                credentials.app = await asyncio.to_thread(
                    ConfidentialClientApplication,
                    client_id=app_id,
                    client_credential=self.config.APP_PASSWORD,
                    authority=login_endpoint,
                    instance_discovery=not self.private,
                    timeout=self.timeout,
                )
            self.made[key] = credentials
        return self.made[key]


class TimedSigningKeys(_OpenIdMetadata):  # type: ignore[misc]
    """The Bot Framework's signing keys, fetched with a timeout and off the event loop
    (botbuilder's own fetch is a blocking `requests.get` without one)."""

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(url)
        self.timeout = timeout

    async def _refresh(self) -> None:
        self.keys = await asyncio.to_thread(self._fetch)
        self.last_updated = datetime.now()  # naive, as botbuilder compares it

    def _fetch(self) -> list[Any]:
        response = requests.get(self.url, timeout=self.timeout)
        response.raise_for_status()
        keys = requests.get(response.json()["jwks_uri"], timeout=self.timeout)
        keys.raise_for_status()
        return list(keys.json()["keys"])


class _TimedKeyCache(dict[str, Any]):
    """botbuilder's process-wide cache of signing-key sources, filled with timed ones."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def get(self, url: str, default: Any = None) -> Any:
        if url not in self:
            self[url] = TimedSigningKeys(url, self.timeout)
        return self[url]


def bound_signing_key_fetches(timeout: float) -> None:
    """Make every signing-key fetch botbuilder does time out after `timeout` seconds.
    (Its extractor looks sources up in one class-level cache; this is the one seam it has.
    The Microsoft 365 Agents SDK, which replaces botbuilder, fetches them asynchronously.)"""
    cache = JwtTokenExtractor.metadataCache
    if not (isinstance(cache, _TimedKeyCache) and cache.timeout == timeout):
        JwtTokenExtractor.metadataCache = _TimedKeyCache(timeout)


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


class TeamsAdapter(CloudAdapter):  # type: ignore[misc]
    """CloudAdapter that also remembers where Teams last reached the bot from.

    Posting to a channel needs the connector's service URL; Teams gives it on every
    authenticated activity and says any URL it has given stays valid.
    """

    def __init__(self, auth: Any, app_id: str, trust: Trust) -> None:
        super().__init__(auth)
        self.app_id = app_id
        self.trust = trust
        self.last_seen: ConversationReference | None = None
        # Seconds a proactive send or update may take (below the outbox lease).
        self.call_timeout = 20.0

    def remember(self, reference: Any) -> bool:
        """Keep `reference` as where Teams reaches the bot; True when that is news (a
        service URL or bot account not seen before), worth storing for other processes."""
        if reference is None or not reference.service_url:
            return False
        seen = self.last_seen
        self.last_seen = reference
        return seen is None or (seen.service_url, getattr(seen.bot, "id", None)) != (
            reference.service_url,
            getattr(reference.bot, "id", None),
        )

    def channel_reference(self, channel: str, tenant_id: str) -> Any:
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
            bot=seen.bot,
            conversation=conversation,
        )


def make_adapter(settings: Settings) -> TeamsAdapter:
    """The adapter for the configured mode: authenticated with an app id, or emulator mode
    (no authentication) only when LIAISON_TEAMS_EMULATOR asks for it explicitly."""
    mode = settings.teams_mode
    if mode is TeamsMode.off:
        raise ValueError("Teams is off: set MICROSOFT_APP_ID (or LIAISON_TEAMS_EMULATOR=1)")
    if problem := settings.teams_credentials_problem():
        raise ValueError(problem)
    if mode is TeamsMode.emulator:
        log.warning(
            "TEAMS EMULATOR MODE: /api/messages accepts UNAUTHENTICATED activities from "
            "loopback connectors; never run this where anyone else can reach the server"
        )
    elif settings.teams_emulator:
        log.warning("LIAISON_TEAMS_EMULATOR is ignored: MICROSOFT_APP_ID is set, tokens count")
    values = {
        "APP_ID": settings.microsoft_app_id,
        "APP_PASSWORD": settings.microsoft_app_password.get_secret_value(),
        "APP_TENANTID": settings.microsoft_app_tenant_id,
        # botbuilder disables authentication only for an empty app id, which emulator
        # mode is; its single-tenant factory refuses an empty id, so name the other kind.
        "APP_TYPE": settings.microsoft_app_type
        if mode is TeamsMode.authenticated
        else "MultiTenant",
    }
    timeout = settings.call_timeout
    config: BotConfig = BotConfig(**values)
    private = bool(settings.teams_auth_url) and mode is TeamsMode.authenticated
    if private:
        config = PrivateCloudConfig(**values, AUTH_URL=settings.teams_auth_url.rstrip("/"))
    auth = ConfigurationBotFrameworkAuthentication(
        config, credentials_factory=TimedCredentials(config, timeout=timeout, private=private)
    )
    if mode is TeamsMode.authenticated:
        bound_signing_key_fetches(timeout)
    adapter = TeamsAdapter(
        auth,
        settings.microsoft_app_id,
        Trust(mode, settings.microsoft_app_tenant_id, settings.extra_service_hosts),
    )
    adapter.on_turn_error = on_turn_error
    adapter.call_timeout = settings.call_timeout
    return adapter


def _is_proactive(activity: Any) -> bool:
    return bool(
        activity.type == ActivityTypes.event
        and activity.name == ActivityEventNames.continue_conversation
    )


async def on_turn_error(turn_context: TurnContext, error: Exception) -> None:
    """Log the failure and tell the person briefly; proactive sends re-raise to the caller."""
    activity = turn_context.activity
    if _is_proactive(activity):
        raise error
    conversation = activity.conversation.id if activity.conversation else "?"
    if unavailable(error):
        # The server's middleware answers 503 with Retry-After; the person hears why.
        log.info("database unreachable: Teams %s in %s refused", activity.type, conversation)
        try:
            await turn_context.send_activity(say("database_down"))
        except ClientException:
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
        await turn_context.send_activity(say("turn_failed"))
    except ClientException:
        log.warning("could not tell the user about the failed turn in %s", conversation)


# ---------------------------------------------------------------- sending


def load_reference(data: Mapping[str, Any]) -> Any:
    return ConversationReference().deserialize(dict(data))


def dump_reference(reference: Any) -> dict[str, Any]:
    return cast(dict[str, Any], reference.serialize())


def message(attachment: Mapping[str, Any], summary: str = "") -> Any:
    """A message activity carrying one Adaptive Card attachment (`summary`: notification text)."""
    return Activity(
        type=ActivityTypes.message,
        summary=plain(summary) or None,
        attachments=[
            Attachment(content_type=attachment["contentType"], content=attachment["content"])
        ],
    )


def error_page(response: Any, *args: Any, **kwargs: Any) -> None:
    """Connector response hook: an error answer whose body msrest cannot parse (a gateway's
    HTML 502 or 504, a plain-text 429) is raised as the HTTP error it is.

    msrest would otherwise fail on the body and raise a DeserializationError that has lost
    the status, so the outbox could not tell a transient answer Teams asks bots to retry
    (429, 412, 502, 504) from a refusal.
    """
    if response.status_code < 400:
        return
    try:
        RawDeserializer.deserialize_from_http_generics(response.text, response.headers)
    except ValueError:  # msrest's DeserializationError, or a body that is not text
        # No error model to read (the body is not one), so no deserializer is needed.
        raise HttpOperationError(cast(Any, None), response) from None


async def send_to(
    adapter: TeamsAdapter, reference: Any, activity: Any, reply_to: str | None = None
) -> str:
    """Send proactively into a conversation; returns the new activity id."""
    sent: list[str] = []

    async def callback(turn_context: TurnContext) -> None:
        connector = turn_context.turn_state.get(adapter.BOT_CONNECTOR_CLIENT_KEY)
        if connector is not None and error_page not in connector.config.hooks:
            connector.config.hooks.append(error_page)
        if connector is not None:
            # Frees the request's thread soon after `wait_for` below has given up on it.
            connector.config.connection.timeout = adapter.call_timeout + 1
        # The synthetic continuation activity's id would otherwise become the replyToId.
        turn_context.activity.id = reply_to
        response = await turn_context.send_activity(activity)
        sent.append(response.id if response is not None and response.id else "")

    adapter.remember(reference)
    # The connector's own timeout covers the request; this bounds the whole turn (token
    # fetch included), so a send never outlives its outbox lease. Teams cannot be asked
    # afterwards whether a timed-out send arrived: the outbox sends it again.
    await asyncio.wait_for(
        adapter.continue_conversation(reference, callback, adapter.app_id), adapter.call_timeout
    )
    return sent[0] if sent else ""


async def update_in(adapter: TeamsAdapter, reference: Any, activity_id: str, activity: Any) -> None:
    """Replace a message the bot posted (PUT .../activities/{activity_id})."""

    async def callback(turn_context: TurnContext) -> None:
        turn_context.activity.id = None
        activity.id = activity_id
        await turn_context.update_activity(activity)

    await asyncio.wait_for(
        adapter.continue_conversation(reference, callback, adapter.app_id), adapter.call_timeout
    )


class TeamsMessenger:
    """Proactive messages: DMs through stored references, channel posts, in-place updates."""

    platform = PLATFORM

    def __init__(
        self, adapter: TeamsAdapter, settings: Settings, store: Store | None = None
    ) -> None:
        self.adapter = adapter
        self.tenant_id = settings.microsoft_app_tenant_id
        self.store = store
        # Teams' per-app limit, kept across all conversations (see digests.pacing).
        self.spacing = Spacing(TEAMS_APP_RATE, TEAMS_APP_BURST)

    async def _channel(self, channel: str) -> Any:
        """A channel reference; the service URL from this process's last activity, else the
        one stored by whichever process last heard from Teams."""
        if self.adapter.last_seen is None and self.store is not None:
            stored = await asyncio.to_thread(self._stored_service)
            if stored:
                self.adapter.remember(load_reference(json.loads(stored)))
        return self.adapter.channel_reference(channel, self.tenant_id)

    def _stored_service(self) -> str | None:
        assert self.store is not None
        with self.store.session() as session:
            return queries.get_setting(session, key=SERVICE_KEY)

    def reaches(self, member: Member) -> bool:
        return member.teams_reference is not None

    async def send(self, member: Member, card: Card) -> Posted:
        if member.teams_reference is None:
            raise LookupError(f"member {member.id} has no Teams conversation with the bot")
        return await self._deliver(load_reference(member.teams_reference), card)

    async def post(self, channel: str, card: Card) -> Posted:
        return await self._deliver(await self._channel(channel), card)

    async def post_report(self, channel: str, report: Report) -> Posted:
        """The digest as one Adaptive Card with its chart, in the channel."""
        reference = await self._channel(channel)
        reference.activity_id = None
        await self.spacing.acquire()
        message_id = await send_to(
            self.adapter, reference, message(report_card(report), report.title), None
        )
        return Posted(reference.conversation.id, message_id, dump_reference(reference))

    async def update(self, location: CardLocation, card: Card) -> None:
        await self.spacing.acquire()
        await update_in(
            self.adapter,
            await self._reference(location),
            location.message_id,
            message(card_attachment(card), card.summary),
        )

    async def reply_in_thread(self, location: CardLocation, card: Card) -> Posted:
        return await self._deliver(
            await self._reference(location), card, reply_to=location.message_id
        )

    async def _reference(self, location: CardLocation) -> Any:
        if location.reference:
            return load_reference(location.reference)
        return await self._channel(location.channel)

    async def _deliver(self, reference: Any, card: Card, reply_to: str | None = None) -> Posted:
        reference.activity_id = None
        await self.spacing.acquire()
        message_id = await send_to(
            self.adapter, reference, message(card_attachment(card), card.summary), reply_to
        )
        return Posted(
            channel=reference.conversation.id,
            message_id=message_id,
            reference=dump_reference(reference),
        )


class TeamsDirectory:
    """Teams bots can only look people up inside conversations they share with them.

    Liaison keeps personal chats only, so members are found once they meet the bot:
    installing the app for a user (by them or an admin) sends a conversationUpdate that
    records their email and personal chat, and the database finds them before this is asked.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def find_by_email(self, email: str) -> bool:
        log.info("Teams cannot look up %s by email; they are found once they meet the bot", email)
        return False


# ---------------------------------------------------------------- replies in a turn


class TeamsResponder:
    """Answers inside the current turn's (1:1) conversation."""

    def __init__(self, turn_context: TurnContext, labels: Mapping[str, str] | None = None) -> None:
        self.turn_context = turn_context
        self.labels = dict(labels or {})

    async def reply(self, card: Card) -> None:
        await self.turn_context.send_activity(message(card_attachment(card), card.summary))

    async def show_form(self, form: Form) -> None:
        await self.turn_context.send_activity(message(form_attachment(form), form.title))

    async def report(self, report: Report) -> None:
        await self.turn_context.send_activity(message(report_card(report), report.title))

    async def form_errors(self, errors: dict[str, str]) -> None:
        problems = [f"{self.labels.get(name, name)} — {why}" for name, why in errors.items()]
        await self.reply(Card(text=say("please_fix", problems=problems), context=say("fix_hint")))

    async def mark_saved(self, form_message_id: str) -> None:
        """Replace a submitted form card so it cannot be sent again by mistake."""
        saved = message(card_attachment(Card(text=say("form_saved"))), say("form_saved"))
        saved.id = form_message_id
        await self.turn_context.update_activity(saved)


def recorded_something(effects: Sequence[Effect]) -> bool:
    """A form submission was accepted and acted on (not refused, not a duplicate)."""
    if any(isinstance(effect, FormErrors) for effect in effects):
        return False
    return any(isinstance(effect, UpdateCards | Notify | Post | Owed) for effect in effects)


# ---------------------------------------------------------------- activities → interactions


def command_text(activity: Any) -> str:
    """The message text without the bot's own @mention."""
    text = str(activity.text or "")
    bot_id = activity.recipient.id if activity.recipient else None
    for entity in activity.entities or []:
        extra = getattr(entity, "additional_properties", None) or {}
        mentioned = extra.get("mentioned") or {}
        tag = str(extra.get("text") or "")
        if str(entity.type or "").lower() == "mention" and mentioned.get("id") == bot_id and tag:
            text = text.replace(tag, " ")
    return text.strip()


def form_values(value: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Split a form submit into the form's state (args) and the answers (values)."""
    shapes = value.get(INPUTS_KEY)
    shapes = shapes if isinstance(shapes, dict) else {}
    values: dict[str, list[str]] = {}
    for name, shape in shapes.items():
        raw = value.get(name)
        if raw is None:
            values[name] = []
        elif isinstance(shape, dict) and shape.get("kind") == "multiselect":
            values[name] = [part.strip() for part in str(raw).split(",") if part.strip()]
        else:
            values[name] = [str(raw)]
    args = {
        k: v for k, v in value.items() if k != FORM_KEY and k not in shapes and isinstance(v, str)
    }
    return args, values


def form_labels(value: Mapping[str, Any]) -> dict[str, str]:
    shapes = value.get(INPUTS_KEY)
    if not isinstance(shapes, dict):
        return {}
    return {
        name: str(shape.get("label") or name)
        for name, shape in shapes.items()
        if isinstance(shape, dict)
    }


def to_interaction(activity: Any, actor: Member) -> Interaction:
    """A message activity as the neutral bot sees it: a command, a button or a form."""
    value = activity.value if isinstance(activity.value, dict) else {}
    conversation = activity.conversation.id
    acted_on = Where(PLATFORM, conversation, activity.reply_to_id or activity.id)
    if isinstance(value.get(FORM_KEY), str):
        args, values = form_values(value)
        nonce = value.get("nonce")
        request_id = (
            f"form:{nonce}" if isinstance(nonce, str) and nonce else f"activity:{activity.id}"
        )
        return Interaction(
            Kind.form,
            value[FORM_KEY],
            actor,
            acted_on,
            args=args,
            values=values,
            request_id=request_id,
        )
    if isinstance(value.get("action"), str):
        picked = value.get(SELECT_KEY)
        raw = value.get(picked) if isinstance(picked, str) else value.get("value")
        return Interaction(
            Kind.action,
            value["action"],
            actor,
            acted_on,
            args=decode(str(raw or "")),
            request_id=f"activity:{activity.id}",
        )
    first, _, rest = command_text(activity).partition(" ")
    return Interaction(
        Kind.command,
        first.lstrip("/").lower() or "help",
        actor,
        Where(PLATFORM, conversation, activity.id),
        text=rest.strip(),
        request_id=f"activity:{activity.id}",
    )


# ---------------------------------------------------------------- the activity handler


def personal_reference(activity: Any, account: Any) -> dict[str, Any] | None:
    """The reference to send `account` DMs with, if this is their 1:1 chat with the bot."""
    conversation = activity.conversation
    if conversation is None or conversation.conversation_type != "personal":
        return None
    reference = TurnContext.get_conversation_reference(activity)
    reference.activity_id = None
    reference.user = ChannelAccount(
        id=account.id, name=account.name, aad_object_id=account.aad_object_id
    )
    return dump_reference(reference)


async def look_up(turn_context: TurnContext, user_id: str) -> tuple[str | None, str | None]:
    """Email and name of a user, from the connector's member lookup."""
    if turn_context.activity.channel_data is None:
        turn_context.activity.channel_data = {}
    try:
        found = await TeamsInfo.get_member(turn_context, user_id)
    except (ClientException, ValueError) as error:  # refused, unreachable or not a member
        log.warning("Teams member lookup for %s failed: %s", user_id, type(error).__name__)
        return None, None
    email = next(
        (e for e in (found.email, found.user_principal_name) if isinstance(e, str) and "@" in e),
        None,
    )
    parts = [p for p in (found.given_name, found.surname) if p]
    return email, found.name or (" ".join(parts) if parts else None)


class LiaisonTeamsBot(ActivityHandler):  # type: ignore[misc]
    """Remembers everyone it meets and hands their messages to the neutral bot."""

    def __init__(self, store: Store, bot: Bot) -> None:
        super().__init__()
        self.store = store
        self.bot = bot
        self.owed = False  # admin notices were written to the outbox: wake the sender

    async def on_turn(self, turn_context: TurnContext) -> None:
        adapter = turn_context.adapter
        if isinstance(adapter, TeamsAdapter):  # the activity is authenticated by now
            reference = TurnContext.get_conversation_reference(turn_context.activity)
            if adapter.remember(reference):
                # Other processes (`liaison tick`, a second instance) post to channels too.
                await asyncio.to_thread(self._store_service, dump_reference(reference))
        await super().on_turn(turn_context)

    def _store_service(self, reference: dict[str, Any]) -> None:
        with self.store.session() as session:
            queries.set_setting(session, key=SERVICE_KEY, value=json.dumps(reference))

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        for account in self._people(activity, activity.members_added or []):
            await self.meet(turn_context, account)

    async def on_installation_update(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if activity.action in ("add", "add-upgrade"):
            for account in self._people(activity, []):
                await self.meet(turn_context, account)
        elif activity.action == "remove" and activity.from_property is not None:
            conversation = activity.conversation
            if conversation is not None and conversation.conversation_type == "personal":
                await asyncio.to_thread(self._forget, activity.from_property.id)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        actor = await self.meet(turn_context, activity.from_property)
        interaction = to_interaction(activity, actor)
        value = activity.value if isinstance(activity.value, dict) else {}
        responder = TeamsResponder(turn_context, form_labels(value))
        effects = await self.bot.handle(interaction, responder)
        if interaction.kind is Kind.form and activity.reply_to_id and recorded_something(effects):
            await responder.mark_saved(activity.reply_to_id)

    @staticmethod
    def _people(activity: Any, added: Sequence[Any]) -> list[Any]:
        bot_id = activity.recipient.id if activity.recipient else None
        people: dict[str, Any] = {}
        for account in [activity.from_property, *added]:
            if account is not None and account.id and account.id != bot_id:
                people.setdefault(account.id, account)
        return list(people.values())

    async def meet(self, turn_context: TurnContext, account: Any) -> Member:
        """Create or refresh the member behind `account`, with email and 1:1 reference."""
        known = await asyncio.to_thread(self._known, account.id)
        email = known.email if known else None
        name = account.name or None
        if not email:
            email, looked_up_name = await look_up(turn_context, account.id)
            name = name or looked_up_name
        reference = personal_reference(turn_context.activity, account)
        member = await asyncio.to_thread(self._save, account.id, name, email, reference)
        if self.owed and self.bot.deliverer.on_owed is not None:
            self.owed = False
            self.bot.deliverer.on_owed()
        return member

    def _known(self, teams_user_id: str) -> Member | None:
        with self.store.session() as session:
            return queries.member_by(session, teams_user_id=teams_user_id)

    def _save(
        self,
        teams_user_id: str,
        name: str | None,
        email: str | None,
        reference: dict[str, Any] | None,
    ) -> Member:
        try:
            return self._upsert(teams_user_id, name, email, reference)
        except IntegrityError:  # a parallel activity from the same new user created them
            log.info("Teams user %s was saved concurrently; updating that record", teams_user_id)
            return self._upsert(teams_user_id, name, email, reference)

    def _upsert(
        self,
        teams_user_id: str,
        name: str | None,
        email: str | None,
        reference: dict[str, Any] | None,
    ) -> Member:
        with self.store.session() as session:
            now = datetime.now(UTC)
            member = queries.upsert_member(
                session, now=now, teams_user_id=teams_user_id, name=name, email=email
            )
            if reference is not None and member.teams_reference != reference:
                member.teams_reference = reference
                session.add(member)
            if email and member.email != email.strip().lower():
                self._tell_admins(session, teams_user_id, email, now)
            return member

    def _tell_admins(self, session: Session, teams_user_id: str, email: str, now: datetime) -> None:
        """Privately, once per account: a Teams account claimed the email of a member who is
        bound to another account, and was kept apart from them (see `upsert_member`)."""
        owner = queries.member_by(session, email=email)
        if owner is None:
            return
        card = Card(
            title=say("identity_claimed_title"),
            text=say("identity_claimed_text", platform="Teams", name=owner.name),
        )
        notices: list[Effect] = [
            Notify(admin.id or 0, card, key=f"identity-claim:teams:{teams_user_id}:{owner.id}")
            for admin in queries.members_with_role(session, role=Role.admin)
        ]
        if owe(session, notices, actor_id=None, now=now, company=self.bot.router.company):
            self.owed = True

    def _forget(self, teams_user_id: str) -> None:
        with self.store.session() as session:
            member = queries.member_by(session, teams_user_id=teams_user_id)
            if member is not None:
                member.teams_reference = None
                session.add(member)


# ---------------------------------------------------------------- the HTTP route


def error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def activity_problem(body: Any) -> str | None:
    """Why `body` is not an activity this endpoint can take, or None."""
    if not isinstance(body, dict):
        return "the body must be one activity, a JSON object"

    def text(value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    conversation, sender = body.get("conversation"), body.get("from")
    checks = {
        "type": text(body.get("type")),
        "serviceUrl": text(body.get("serviceUrl"))
        and str(body["serviceUrl"]).startswith(("https://", "http://")),
        "conversation.id": isinstance(conversation, dict) and text(conversation.get("id")),
        "from.id": isinstance(sender, dict) and text(sender.get("id")),
    }
    missing = [name for name, ok in checks.items() if not ok]
    if missing:
        return "the activity lacks a valid " + ", ".join(missing)
    try:
        Activity().deserialize(body)
    except ValueError:  # msrest's DeserializationError is a ValueError
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


async def authenticate(
    adapter: TeamsAdapter, activity: Any, auth_header: str
) -> Any | web.Response:
    """botbuilder's check of the Bot Framework / Entra token (anonymous in emulator mode):
    its result, or a 401 for any token problem (503 when the signing keys cannot be read)."""
    try:
        return await adapter.bot_framework_authentication.authenticate_request(
            activity, auth_header
        )
    except PermissionError as refused:
        why = str(refused)
    except requests.RequestException as unreachable:
        log.warning("cannot fetch the Bot Framework signing keys: %s", type(unreachable).__name__)
        response = error(503, "the token cannot be checked right now; try again")
        response.headers["Retry-After"] = "30"
        return response
    except Exception as invalid:  # botbuilder raises jwt, key and bare Exception errors
        why = type(invalid).__name__
    log.warning("Teams activity refused: the token is missing or invalid (%s)", why)
    return error(401, "the request's Bot Framework token is missing or invalid")


def make_route(adapter: TeamsAdapter, store: Store, bot: Bot) -> Route:
    """`POST /api/messages`: check the shape, authenticate, check the tenant and the
    service URL, and only then let the bot run the activity."""
    handler = LiaisonTeamsBot(store, bot)

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await read_activity(request)
        if isinstance(body, web.Response):
            return body
        activity = Activity().deserialize(body)
        auth = await authenticate(adapter, activity, request.headers.get("Authorization", ""))
        if isinstance(auth, web.Response):
            return auth
        problem = adapter.trust.problem(body)
        if problem is not None:
            log.warning("Teams activity refused: %s", problem)
            return error(403, problem)
        invoke = await adapter.process_activity(auth, activity, handler.on_turn)
        if invoke is not None:
            return web.json_response(serializer_helper(invoke.body), status=invoke.status)
        return web.Response(status=201)

    return messages
