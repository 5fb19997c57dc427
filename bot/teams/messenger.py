"""Proactive Teams messages: DMs through stored conversation references, channel posts,
in-place updates of a card by its activity id."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from microsoft_agents.activity import Activity, ActivityTypes, Attachment, ConversationReference
from microsoft_agents.hosting.core import TurnContext

from bot.core.delivery import Posted
from bot.core.interaction import Person
from bot.core.messages import Card, CardPlace, Report
from bot.core.pacing import TEAMS_APP_BURST, TEAMS_APP_RATE, Spacing
from bot.teams.adapter import TeamsAdapter, dump_reference, load_reference
from bot.teams.cards import card_attachment, plain, report_card
from storage import channels
from storage.db import Store
from storage.models import Member

if TYPE_CHECKING:
    from bot.core.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "teams"
SERVICE_KEY = "teams_service"  # company_settings: the last reference Teams reached us with


def message(attachment: Mapping[str, Any], summary: str = "") -> Activity:
    """A message activity carrying one Adaptive Card attachment (`summary`: notification text)."""
    return Activity(
        type=ActivityTypes.message,
        summary=plain(summary) or None,
        attachments=[
            Attachment(content_type=attachment["contentType"], content=attachment["content"])
        ],
    )


def _teams_user_ids(store: Store, member_ids: Sequence[int]) -> list[str]:
    with store.session() as session:
        members = (session.get(Member, member_id) for member_id in member_ids)
        return [m.teams_user_id for m in members if m is not None and m.teams_user_id]


async def refresh_users(store: Store | None, card: Card) -> list[str]:
    """The Teams user ids a card refreshes itself for (its `Refresh.viewers` on Teams)."""
    if store is None or card.refresh is None or not card.refresh.viewers:
        return []
    return await asyncio.to_thread(_teams_user_ids, store, card.refresh.viewers)


async def card_message(store: Store | None, card: Card) -> Activity:
    """The message carrying `card` as everyone sees it, refreshed for those who may act."""
    users = await refresh_users(store, card)
    return message(card_attachment(card, user_ids=users), card.summary)


async def send_to(
    adapter: TeamsAdapter,
    reference: ConversationReference,
    activity: Activity,
    reply_to: str | None = None,
) -> str:
    """Send proactively into a conversation; returns the new activity id."""
    sent: list[str] = []

    async def callback(turn_context: TurnContext) -> None:
        # The synthetic continuation activity's id would otherwise become the replyToId.
        turn_context.activity.id = reply_to
        response = await turn_context.send_activity(activity)
        sent.append(response.id if response is not None and response.id else "")

    adapter.remember(reference)
    # The connector client's own timeout covers the request; this bounds the whole turn
    # (token fetch included), so a send never outlives its outbox lease. Teams cannot be
    # asked afterwards whether a timed-out send arrived: the outbox sends it again.
    await asyncio.wait_for(
        adapter.continue_conversation_with_claims(
            adapter.proactive_identity(), reference.get_continuation_activity(), callback
        ),
        adapter.call_timeout,
    )
    return sent[0] if sent else ""


async def update_in(
    adapter: TeamsAdapter, reference: ConversationReference, activity_id: str, activity: Activity
) -> None:
    """Replace a message the bot posted (PUT .../activities/{activity_id})."""

    async def callback(turn_context: TurnContext) -> None:
        turn_context.activity.id = None
        activity.id = activity_id
        await turn_context.update_activity(activity)

    await asyncio.wait_for(
        adapter.continue_conversation_with_claims(
            adapter.proactive_identity(), reference.get_continuation_activity(), callback
        ),
        adapter.call_timeout,
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
        # Teams' per-app limit, kept across all conversations (see bot.core.pacing).
        self.spacing = Spacing(TEAMS_APP_RATE, TEAMS_APP_BURST)

    async def _channel(self, channel: str) -> ConversationReference:
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
            return channels.get_setting(session, key=SERVICE_KEY)

    def reaches(self, member: Person) -> bool:
        return member.teams_reference is not None

    async def send(self, member: Person, card: Card) -> Posted:
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

    async def update(self, location: CardPlace, card: Card) -> None:
        await self.spacing.acquire()
        await update_in(
            self.adapter,
            await self._reference(location),
            location.message_id,
            await card_message(self.store, card),
        )

    async def reply_in_thread(self, location: CardPlace, card: Card) -> Posted:
        return await self._deliver(
            await self._reference(location), card, reply_to=location.message_id
        )

    async def _reference(self, location: CardPlace) -> ConversationReference:
        if location.reference:
            return load_reference(location.reference)
        return await self._channel(location.channel)

    async def _deliver(
        self, reference: ConversationReference, card: Card, reply_to: str | None = None
    ) -> Posted:
        reference.activity_id = None
        sent = await card_message(self.store, card)
        await self.spacing.acquire()
        message_id = await send_to(self.adapter, reference, sent, reply_to)
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
