"""The Slack adapter: Bolt (HTTP on /slack/events, or Socket Mode) to and from Interactions.

Listeners ack at once and do the work after the ack, so a slow Web API or database
never costs Slack's 3-second deadline. Only modal submissions decide before acking,
because validation errors travel back in the ack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.buttons import decode
from bot.core.delivery import Bot, LookupFailed, Posted
from bot.core.effects import FormErrors
from bot.core.idempotency import METADATA_EVENT, OUTBOX_KEY
from bot.core.interaction import Interaction, Kind, Person, Where
from bot.core.messages import Card, CardPlace, Form, Report
from bot.core.settings import Settings
from bot.core.tasks import Background
from bot.core.text import text_for
from bot.slack.blocks import (
    card_blocks,
    fallback,
    modal,
    mrkdwn_escape,
    plain,
    report_blocks,
    section,
    view_values,
)
from bot.slack.client import PacedWebClient
from bot.slack.shapes import checked_body, form_state
from storage import members as stored_members
from storage import verdicts
from storage.db import Store, unavailable

log = logging.getLogger(__name__)
PLATFORM = "slack"
# views.open's answers when the trigger_id is older than Slack's 3 seconds, or used.
STALE_TRIGGER = {"expired_trigger_id", "exchanged_trigger_id"}
RECALL_SLACK = 60.0  # seconds before an attempt's start that its message is looked for


def slack_error(error: SlackApiError) -> str:
    """Slack's error code (`users_not_found`, `ratelimited`…), or the HTTP status."""
    data = error.response.data
    if isinstance(data, dict):
        return str(data.get("error", "unknown"))
    return f"HTTP {error.response.status_code}"


def make_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = (
        settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else (settings.slack_api_url + "/")
    )
    # Every Web API call ends well within the outbox lease (slack_sdk takes whole seconds).
    timeout = max(1, int(settings.call_timeout))
    # Slack's per-method 429s are kept app-wide (bot.slack.client).
    return PacedWebClient(token=token, base_url=base_url, timeout=timeout)


def outbox_metadata() -> dict[str, Any] | None:
    """Message metadata naming the outbox row being delivered, so a later attempt can find
    the message if this one's answer is lost (a timeout): `conversations.history`."""
    key = OUTBOX_KEY.get()
    if key is None:
        return None
    return {"event_type": METADATA_EVENT, "event_payload": {"key": key}}


class SlackMessenger:
    """Sends DMs and channel posts, updates cards in place, finds members by email."""

    platform = PLATFORM

    def __init__(self, client: AsyncWebClient, store: Store, lookup_timeout: float = 5.0) -> None:
        self.client = client
        self.store = store
        self.lookup_timeout = lookup_timeout
        # Each person's DM conversation id, learnt from posts to them or conversations.open
        # (a Tier 3 method: not asked again for someone already seen).
        self.dm_of: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> SlackMessenger:
        return cls(make_client(settings), store, settings.lookup_timeout_seconds)

    def reaches(self, member: Person) -> bool:
        return member.slack_user_id is not None

    async def send(self, member: Person, card: Card) -> Posted:
        return await self.post(member.slack_user_id or "", card)

    async def post(self, channel: str, card: Card) -> Posted:
        response = await self.client.chat_postMessage(
            channel=channel,
            text=fallback(card.summary),
            blocks=card_blocks(card),
            unfurl_links=False,
            metadata=outbox_metadata(),
        )
        posted = Posted(channel=str(response["channel"]), message_id=str(response["ts"]))
        if channel.startswith(("U", "W")):
            self.dm_of[channel] = posted.channel
        return posted

    async def update(self, location: CardPlace, card: Card) -> None:
        await self.client.chat_update(
            channel=location.channel,
            ts=location.message_id,
            text=fallback(card.summary),
            blocks=card_blocks(card),
        )

    async def reply_in_thread(self, location: CardPlace, card: Card) -> Posted:
        response = await self.client.chat_postMessage(
            channel=location.channel,
            thread_ts=location.message_id,
            text=fallback(card.summary),
            blocks=card_blocks(card),
            unfurl_links=False,
            metadata=outbox_metadata(),
        )
        return Posted(channel=str(response["channel"]), message_id=str(response["ts"]))

    async def post_report(self, channel: str, report: Report) -> Posted:
        """The digest as Block Kit; its chart is a part of its own (`post_chart`)."""
        response = await self.client.chat_postMessage(
            channel=channel,
            text=fallback(report.title),
            blocks=report_blocks(report),
            unfurl_links=False,
            metadata=outbox_metadata(),
        )
        return Posted(channel=str(response["channel"]), message_id=str(response["ts"]))

    async def post_chart(self, posted: Posted, report: Report) -> Posted:
        """The digest's chart, uploaded to the channel the digest went to (needs the
        `files:write` scope)."""
        response = await self.client.files_upload_v2(
            channel=posted.channel,
            content=report.chart,
            filename="liaison-digest.png",
            title=report.chart_alt or report.title,
        )
        file = response.get("file") or {}
        return Posted(channel=posted.channel, message_id=str(file.get("id", "")))

    async def recall(
        self,
        *,
        key: str,
        member: Person | None,
        channel: str | None,
        since: datetime,
        thread: str | None = None,
    ) -> Posted | None:
        """The message an earlier attempt posted with outbox `key` in its metadata, if Slack
        has it: `conversations.history` (or `.replies` of a thread) from shortly before
        `since`. Errors propagate: not knowing is not "not there"."""
        where = channel or (member.slack_user_id if member is not None else None)
        if not where:
            return None
        if where.startswith(("U", "W")):  # a DM: its conversation id
            user = where
            if user not in self.dm_of:
                opened = await self.client.conversations_open(users=user)
                self.dm_of[user] = str(opened["channel"]["id"])
            where = self.dm_of[user]
        oldest = f"{since.timestamp() - RECALL_SLACK:.6f}"
        if thread:
            response = await self.client.conversations_replies(
                channel=where, ts=thread, oldest=oldest, include_all_metadata=True, limit=200
            )
        else:
            response = await self.client.conversations_history(
                channel=where, oldest=oldest, include_all_metadata=True, limit=200
            )
        for found in response.get("messages") or []:
            metadata = found.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_EVENT and payload.get("key") == key:
                return Posted(channel=where, message_id=str(found["ts"]))
        return None

    async def healthy(self) -> bool:
        """Whether Slack answers `auth.test` (the outbox's probe after an outage)."""
        try:
            response = await self.client.auth_test()
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.info("Slack health probe: no answer yet (%s)", type(error).__name__)
            return False
        return bool(response.get("ok"))

    async def find_by_email(self, email: str) -> bool:
        """Slack's `users.lookupByEmail`; a found user is remembered as a member. Slack's
        `users_not_found` is False; any other error or no answer within `lookup_timeout`
        raises `LookupFailed`."""
        try:
            async with asyncio.timeout(self.lookup_timeout):
                response = await self.client.users_lookupByEmail(email=email)
        except SlackApiError as error:
            if slack_error(error) == "users_not_found":
                return False
            raise LookupFailed(f"users.lookupByEmail: {slack_error(error)}") from error
        except (TimeoutError, aiohttp.ClientError, SlackClientError) as error:
            raise LookupFailed(f"users.lookupByEmail: {type(error).__name__}") from error
        user = response["user"]
        name = user.get("real_name") or user.get("profile", {}).get("real_name") or user["name"]
        tz = user.get("tz")
        await asyncio.to_thread(self._remember, user["id"], email, name, tz)
        return True

    def _remember(self, user_id: str, email: str, name: str, tz: str | None) -> None:
        with self.store.session() as session:
            stored_members.upsert_member(
                session,
                now=datetime.now(UTC),
                slack_user_id=user_id,
                email=email,
                name=name,
                timezone=tz,
            )


class SlackResponder:
    """Private answers through `response_url` (or postEphemeral), forms as modals."""

    def __init__(self, client: AsyncWebClient, body: dict[str, Any]) -> None:
        self.client = client
        self.body = body
        self.errors: dict[str, str] = {}

    def _channel(self) -> str:
        channel = self.body.get("channel") or {}
        if isinstance(channel, dict):
            return str(channel.get("id", ""))
        return str(self.body.get("channel_id", ""))

    def _user(self) -> str:
        user = self.body.get("user") or {}
        return str(user.get("id", "")) if isinstance(user, dict) else str(self.body.get("user_id"))

    async def reply(self, card: Card) -> None:
        await self._private(card.summary, card_blocks(card))

    async def _private(self, summary: str, blocks: list[dict[str, Any]]) -> None:
        summary = fallback(summary)  # the notification text is mrkdwn too: no pings
        if self.body.get("response_url"):
            # Through the client's shared session: no new connection per answer.
            webhook = AsyncWebhookClient(self.body["response_url"], session=self.client.session)
            await webhook.send(
                text=summary, blocks=blocks, response_type="ephemeral", replace_original=False
            )
        elif self._channel().startswith("D"):
            # In the person's DM with Liaison a plain message is already private.
            await self.client.chat_postMessage(channel=self._channel(), text=summary, blocks=blocks)
        elif self._channel():
            await self.client.chat_postEphemeral(
                channel=self._channel(), user=self._user(), text=summary, blocks=blocks
            )
        else:
            await self.client.chat_postMessage(channel=self._user(), text=summary, blocks=blocks)

    async def report(self, report: Report) -> None:
        """A digest preview: the same blocks as Monday's post, privately (no chart)."""
        await self._private(report.title, report_blocks(report))

    async def show_form(self, form: Form) -> None:
        if not self.body.get("trigger_id"):
            # A message typed in the DM carries no trigger, and Slack opens a modal only
            # from a slash command or a button press: say how to get the form.
            typed = str((self.body.get("event") or {}).get("text", "")).strip().lstrip("/")
            await self.reply(Card(text=text_for("slack_form_needs_slash", command=typed)))
            return
        metadata = dict(form.state)
        try:
            await self.client.views_open(
                trigger_id=self.body["trigger_id"], view=modal(form, metadata=metadata)
            )
        except SlackApiError as error:
            if slack_error(error) not in STALE_TRIGGER:
                raise
            # A slow moment (database, Slack) outlived the trigger: say so, privately.
            log.warning("views.open %s: %s", form.name, slack_error(error))
            await self.reply(Card(text=text_for("slack_form_too_late")))

    async def form_errors(self, errors: dict[str, str]) -> None:
        self.errors.update(errors)


class HomeTab(SlackResponder):
    """Publishes the home view on the person's App Home tab instead of answering in chat."""

    async def reply(self, card: Card) -> None:
        await self.client.views_publish(
            user_id=self._user(), view={"type": "home", "blocks": card_blocks(card)}
        )


def known_member(store: Store, user_id: str) -> Person | None:
    with store.reading() as session:
        found = verdicts.member_by_slack_id(session, user_id=user_id)
        return Person.of(found) if found is not None else None


async def member_for(client: AsyncWebClient, store: Store, user: dict[str, Any]) -> Person:
    """The member behind a Slack user; on first sight, `users.info` supplies email and name
    so someone already known by email (e.g. `liaison members set`) is the same member."""
    member = await asyncio.to_thread(known_member, store, user["id"])
    if member is not None:
        return member
    email = name = tz = None
    try:
        info = (await client.users_info(user=user["id"]))["user"]
        email = info.get("profile", {}).get("email")
        name = info.get("real_name") or info.get("profile", {}).get("real_name")
        tz = info.get("tz")
    except SlackApiError as error:
        log.warning("users.info failed: %s", slack_error(error))
    name = name or user.get("name") or user.get("username") or user["id"]

    def save() -> Person:
        with store.session() as session:
            saved = stored_members.upsert_member(
                session,
                now=datetime.now(UTC),
                slack_user_id=user["id"],
                email=email,
                name=name,
                timezone=tz,
            )
            return Person.of(saved)

    return await asyncio.to_thread(save)


def build_bolt_app(
    settings: Settings, client: AsyncWebClient, store: Store, bot: Bot, background: Background
) -> AsyncApp:
    """The Bolt app with Liaison's listeners; `process_before_response` for a fast ack."""
    secret = (
        settings.slack_signing_secret.get_secret_value() if (settings.slack_signing_secret) else ""
    )
    app = AsyncApp(
        client=client,
        signing_secret=secret,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )

    async def actor(user: dict[str, Any]) -> Person:
        return await member_for(client, store, user)

    async def run(interaction_of: Any, responder: SlackResponder) -> None:
        try:
            interaction = interaction_of(await actor(responder.body["user"]))
            await bot.handle(interaction, responder)
        except Exception as error:
            if not unavailable(error):
                raise
            store.outage.lost(error)
            log.info("database unreachable: told %s to try again", responder._user())
            await responder.reply(Card(text=text_for("database_down")))

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
        """A listener failed before its ack (only modal submissions decide first)."""
        if not unavailable(error):
            log.error("Slack listener failed", exc_info=error)
            return None  # Bolt answers 500
        store.outage.lost(error)
        log.info("database unreachable: a Slack %s refused", body.get("type"))
        return database_down_ack(body)

    @app.command(re.compile(r"^/.+"))
    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        slash = str(body.get("command", "")).lstrip("/")
        text = str(body.get("text", "")).strip()
        if slash == "liaison":
            slash, _, text = text.partition(" ")
            slash = slash or "help"
        responder = SlackResponder(client, body)
        user = {"id": body.get("user_id", ""), "name": body.get("user_name")}
        responder.body = dict(body, user=user)
        where = Where(PLATFORM, str(body.get("channel_id", "")))
        background.spawn(
            run(
                lambda me: Interaction(Kind.command, slash.lower(), me, where, text=text.strip()),
                responder,
            )
        )

    @app.action(re.compile(r".+"))
    async def on_action(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        value = action.get("value") or (action.get("selected_option") or {}).get("value", "")
        container = body.get("container") or {}
        where = Where(
            PLATFORM, str(container.get("channel_id", "")), str(container.get("message_ts", ""))
        )
        responder = SlackResponder(client, body)
        background.spawn(
            run(
                lambda me: Interaction(
                    Kind.action,
                    str(action.get("action_id", "")),
                    me,
                    where,
                    args=decode(str(value)),
                ),
                responder,
            )
        )

    @app.view(re.compile(r".+"))
    async def on_view(ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body["view"]
        args = form_state(str(view.get("private_metadata") or "")) or {}
        # A modal has no channel of its own, and its metadata comes back from the client:
        # the answer goes to the person's DM with Liaison, never to a channel named there.
        responder = SlackResponder(
            client, {"user": body["user"], "trigger_id": body.get("trigger_id")}
        )
        me = await actor(body["user"])
        interaction = Interaction(
            Kind.form,
            str(view.get("callback_id", "")),
            me,
            Where(PLATFORM),
            args=args,
            values=view_values(view),
            request_id=f"form:{args['nonce']}" if args.get("nonce") else f"view:{view.get('id')}",
        )
        effects = await bot.decide(interaction)
        errors = [e for e in effects if isinstance(e, FormErrors)]
        if errors:
            await ack(response_action="errors", errors=errors[0].errors)
            return
        await ack()
        background.spawn(bot.deliverer.deliver(effects, responder))

    @app.event("app_home_opened")
    async def on_home_opened(body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab") != "home":
            return  # the Messages tab: nothing to publish
        user = {"id": str(event.get("user", ""))}
        responder = HomeTab(client, dict(body, user=user))
        where = Where(PLATFORM, str(event.get("channel", "")))
        background.spawn(run(lambda me: Interaction(Kind.command, "home", me, where), responder))

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("bot_id") or event.get("subtype") or event.get("channel_type") != "im":
            return
        word, _, rest = str(event.get("text", "")).strip().lstrip("/").partition(" ")
        responder = SlackResponder(
            client,
            dict(
                body, user={"id": event.get("user", "")}, channel={"id": event.get("channel", "")}
            ),
        )
        where = Where(PLATFORM, str(event.get("channel", "")), str(event.get("ts", "")))
        request_id = f"event:{body.get('event_id', '')}"
        background.spawn(
            run(
                lambda me: Interaction(
                    Kind.command,
                    word.lower() or "help",
                    me,
                    where,
                    text=rest,
                    request_id=request_id,
                ),
                responder,
            )
        )

    return app


def database_down_ack(body: dict[str, Any]) -> BoltResponse:
    """The ack that tells the person the database does not answer: on a modal, under its first
    field, so the form stays open with what was typed, for another try in a minute."""
    text = text_for("database_down")
    view = body.get("view")
    blocks = view.get("blocks") if isinstance(view, dict) else None
    first = next(
        (
            b["block_id"]
            for b in blocks or []
            if isinstance(b, dict) and b.get("type") == "input" and b.get("block_id")
        ),
        None,
    )
    if body.get("type") == "view_submission" and first:
        answer: dict[str, Any] = {"response_action": "errors", "errors": {first: text}}
    elif isinstance(view, dict) and body.get("type") == "view_submission":  # nothing typed
        title = view.get("title") if isinstance(view.get("title"), dict) else plain("Liaison")
        notice = {"type": "modal", "title": title, "blocks": [section(mrkdwn_escape(text))]}
        answer = {"response_action": "update", "view": notice}
    else:  # a slash command shows this privately; other payloads only need the ack
        answer = {"response_type": "ephemeral", "text": text}
    return BoltResponse(
        status=200, body=json.dumps(answer), headers={"content-type": "application/json"}
    )


def signed_by_slack(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    """Slack's v0 signature over the raw bytes, from the last five minutes.

    (slack_sdk's verifier decodes the body as UTF-8 first and raises on other bytes.)
    """
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    given = headers.get("X-Slack-Signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def make_route(settings: Settings, app: AsyncApp) -> Any:
    """POST /slack/events: verify the signature, refuse a body that is not JSON nested at most
    64 deep or not shaped as the Slack request it claims to be (400), then Bolt."""
    secret = (
        settings.slack_signing_secret.get_secret_value() if (settings.slack_signing_secret) else ""
    )

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        if not secret or not signed_by_slack(secret, body, request.headers, time.time()):
            return web.json_response({"error": "invalid or missing Slack signature"}, status=401)
        payload = checked_body(body, request.content_type, request.charset)
        if isinstance(payload, str):
            return web.json_response({"error": payload}, status=400)
        # Bolt gets the very body that was checked, as a dict, so it does not parse the
        # bytes its own way; it skips its signature check for a dict (Socket Mode's way),
        # which was done above on the raw bytes.
        bolt_request = AsyncBoltRequest(
            body=payload,
            query=request.query_string,
            headers=dict(request.headers),
            mode="socket_mode",
        )
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    return events


async def run_socket_mode(
    settings: Settings, client: AsyncWebClient, store: Store, bot: Bot
) -> None:
    """Connect over Socket Mode (no public URL needed) until interrupted."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    background = Background()
    app = build_bolt_app(settings, client, store, bot, background)
    token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    await AsyncSocketModeHandler(app, token).start_async()  # type: ignore[no-untyped-call]
