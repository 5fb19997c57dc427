"""Teams activities as the neutral bot sees them: messages, card submits and form submits
become `Interaction`s, and everyone the bot meets is remembered with their personal
conversation reference (what proactive messages are sent with later)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from microsoft_agents.activity import (
    Activity,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
    ChannelAccount,
)
from microsoft_agents.hosting.core import ActivityHandler, TurnContext
from microsoft_agents.hosting.core.connector import ConnectorClientBase
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.core.buttons import decode
from bot.core.delivery import Bot
from bot.core.effects import Effect, FormErrors, Notify, Owed, Post, Reply, UpdateCards
from bot.core.interaction import Interaction, Kind, Person, Where
from bot.core.messages import Card, Form, Report
from bot.core.owing import for_admins, write_to_outbox
from bot.core.text import text_for
from bot.teams.adapter import TeamsAdapter, dump_reference
from bot.teams.cards import (
    CARD_KEY,
    CONTENT_TYPE,
    FORM_KEY,
    INPUTS_KEY,
    SELECT_KEY,
    card_attachment,
    card_content,
    form_attachment,
    report_card,
)
from bot.teams.messenger import PLATFORM, SERVICE_KEY, card_message, message, refresh_users
from storage import channels as stored_channels
from storage import members
from storage.db import Store
from storage.models import Member

log = logging.getLogger(__name__)

MESSAGE_TYPE = "application/vnd.microsoft.activity.message"  # an invoke answer that is text


# ---------------------------------------------------------------- replies in a turn


class TeamsResponder:
    """Answers inside the current turn's (1:1) conversation."""

    def __init__(
        self,
        turn_context: TurnContext,
        labels: Mapping[str, str] | None = None,
        store: Store | None = None,
    ) -> None:
        self.turn_context = turn_context
        self.labels = dict(labels or {})
        self.store = store

    async def reply(self, card: Card) -> None:
        await self.turn_context.send_activity(await card_message(self.store, card))

    async def show_form(self, form: Form) -> None:
        await self.turn_context.send_activity(message(form_attachment(form), form.title))

    async def report(self, report: Report) -> None:
        await self.turn_context.send_activity(message(report_card(report), report.title))

    async def form_errors(self, errors: dict[str, str]) -> None:
        problems = [f"{self.labels.get(name, name)} — {why}" for name, why in errors.items()]
        await self.reply(
            Card(text=text_for("please_fix", problems=problems), context=text_for("fix_hint"))
        )

    async def mark_saved(self, form_message_id: str) -> None:
        """Replace a submitted form card so it cannot be sent again by mistake."""
        saved = message(card_attachment(Card(text=text_for("form_saved"))), text_for("form_saved"))
        saved.id = form_message_id
        await self.turn_context.update_activity(saved)


def card_answer(content: dict[str, Any]) -> AdaptiveCardInvokeResponse:
    """The invoke answer that replaces the card for the person who acted."""
    return AdaptiveCardInvokeResponse(status_code=200, type=CONTENT_TYPE, value=content)


def message_answer(text: str) -> AdaptiveCardInvokeResponse:
    """The invoke answer that leaves the card as it is and shows a short message."""
    return AdaptiveCardInvokeResponse(status_code=200, type=MESSAGE_TYPE, value=text)


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
        data = entity.model_dump(mode="json", by_alias=True)
        mentioned = data.get("mentioned") or {}
        tag = str(data.get("text") or "")
        mention = str(data.get("type") or "").lower() == "mention"
        if mention and mentioned.get("id") == bot_id and tag:
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


def to_interaction(
    activity: Any, actor: Person, pressed: Mapping[str, Any] | None = None
) -> Interaction:
    """A message activity as the neutral bot sees it: a command, a button or a form
    (`pressed`: the data of a Universal Action, instead of a submit's `value`)."""
    if pressed is not None:
        value: Mapping[str, Any] = pressed
    else:
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


def personal_reference(activity: Activity, account: ChannelAccount) -> dict[str, Any] | None:
    """The reference to send `account` DMs with, if this is their 1:1 chat with the bot."""
    conversation = activity.conversation
    if conversation is None or conversation.conversation_type != "personal":
        return None
    reference = activity.get_conversation_reference()
    reference.activity_id = None
    fields = {"id": account.id, "name": account.name, "aad_object_id": account.aad_object_id}
    reference.user = ChannelAccount(**{k: v for k, v in fields.items() if v is not None})
    return dump_reference(reference)


async def look_up(turn_context: TurnContext, user_id: str) -> tuple[str | None, str | None]:
    """Email and name of a user, from the connector's member lookup."""
    connector = turn_context.services.get(ConnectorClientBase)  # type: ignore[type-abstract]
    conversation = turn_context.activity.conversation
    if not isinstance(connector, TeamsConnectorClient) or conversation is None:
        return None, None
    try:
        found = await connector.get_conversation_member(conversation.id, user_id)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        # Refused, unreachable, not a member, or an answer that is not a member.
        log.warning("Teams member lookup for %s failed: %s", user_id, type(error).__name__)
        return None, None
    email = next(
        (e for e in (found.email, found.user_principal_name) if isinstance(e, str) and "@" in e),
        None,
    )
    parts = [p for p in (found.given_name, found.surname) if p]
    return email, found.name or (" ".join(parts) if parts else None)


class LiaisonTeamsBot(ActivityHandler):
    """Remembers everyone it meets and hands their messages to the neutral bot."""

    def __init__(self, store: Store, bot: Bot) -> None:
        super().__init__()
        self.store = store
        self.bot = bot
        self.owed = False  # admin notices were written to the outbox: wake the sender

    async def on_turn(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        adapter = turn_context.adapter
        if isinstance(adapter, TeamsAdapter):  # the activity is authenticated by now
            reference = turn_context.activity.get_conversation_reference()
            if adapter.remember(reference):
                # Other processes (`liaison tick`, a second instance) post to channels too.
                await asyncio.to_thread(self._store_service, dump_reference(reference))
        await super().on_turn(turn_context)

    def _store_service(self, reference: dict[str, Any]) -> None:
        with self.store.session() as session:
            stored_channels.set_setting(session, key=SERVICE_KEY, value=json.dumps(reference))

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        activity = turn_context.activity
        for account in self._people(activity, activity.members_added or []):
            await self.meet(turn_context, account)

    async def on_installation_update(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        activity = turn_context.activity
        if activity.action in ("add", "add-upgrade"):
            for account in self._people(activity, []):
                await self.meet(turn_context, account)
        elif activity.action == "remove" and activity.from_property is not None:
            conversation = activity.conversation
            if conversation is not None and conversation.conversation_type == "personal":
                await asyncio.to_thread(self._forget, activity.from_property.id)

    async def on_message_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        activity = turn_context.activity
        actor = await self.meet(turn_context, activity.from_property)
        interaction = to_interaction(activity, actor)
        value = activity.value if isinstance(activity.value, dict) else {}
        responder = TeamsResponder(turn_context, form_labels(value), self.store)
        effects = await self.bot.handle(interaction, responder)
        if interaction.kind is Kind.form and activity.reply_to_id and recorded_something(effects):
            await responder.mark_saved(activity.reply_to_id)

    async def on_adaptive_card_invoke(  # type: ignore[override]
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        """A Universal Action: a button pressed, a form sent, or Teams asking for the card
        as this person should see it (a refresh). Answered with the card as it now stands
        for them; what else the action says goes into the chat as before."""
        activity = turn_context.activity
        actor = await self.meet(turn_context, activity.from_property)
        action = invoke_value.action
        data = {str(k): v for k, v in (action.data or {}).items()}
        if not isinstance(data.get(FORM_KEY), str) and not isinstance(data.get("action"), str):
            data["action"] = action.verb or ""
        interaction = to_interaction(activity, actor, data)
        responder = TeamsResponder(turn_context, form_labels(data), self.store)
        redraw = data.get(CARD_KEY)
        if isinstance(redraw, dict) and interaction.name == redraw.get("action"):
            return await self.draw(interaction, responder)  # a refresh
        effects = await self.bot.handle(interaction, responder)
        if isinstance(redraw, dict) and isinstance(redraw.get("action"), str):
            again = Interaction(
                Kind.action,
                redraw["action"],
                actor,
                interaction.where,
                args=decode(str(redraw.get("value") or "")),
                request_id=f"{interaction.request_id}:redraw",
            )
            return await self.draw(again, responder)
        if interaction.kind is Kind.form and recorded_something(effects):
            return card_answer(card_content(Card(text=text_for("form_saved"))))
        return message_answer(text_for("card_action_done"))

    async def draw(
        self, interaction: Interaction, responder: TeamsResponder
    ) -> AdaptiveCardInvokeResponse:
        """Answer with the card the handler draws for this person (its first reply); any
        other effect is delivered as usual."""
        effects = await self.bot.decide(interaction)
        card = next((e.card for e in effects if isinstance(e, Reply)), None)
        rest = [e for e in effects if not (isinstance(e, Reply) and e.card is card)]
        await self.bot.deliverer.deliver(rest, responder)
        if card is None:
            return message_answer(text_for("card_action_done"))
        users = await refresh_users(self.store, card)
        return card_answer(card_content(card, user_ids=users, own=True))

    @staticmethod
    def _people(activity: Activity, added: Sequence[ChannelAccount]) -> list[ChannelAccount]:
        bot_id = activity.recipient.id if activity.recipient else None
        people: dict[str, ChannelAccount] = {}
        for account in [activity.from_property, *added]:
            if account is not None and account.id and account.id != bot_id:
                people.setdefault(account.id, account)
        return list(people.values())

    async def meet(self, turn_context: TurnContext, account: ChannelAccount) -> Person:
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
        return Person.of(member)

    def _known(self, teams_user_id: str) -> Member | None:
        with self.store.session() as session:
            return members.member_by(session, teams_user_id=teams_user_id)

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
            member = members.upsert_member(
                session, now=now, teams_user_id=teams_user_id, name=name, email=email
            )
            if reference is not None and member.teams_reference != reference:
                members.set_teams_reference(session, member=member, reference=reference)
            if email and member.email != email.strip().lower():
                self._tell_admins(session, teams_user_id, email, now)
            return member

    def _tell_admins(self, session: Session, teams_user_id: str, email: str, now: datetime) -> None:
        """Privately, once per account: a Teams account claimed the email of a member who is
        bound to another account, and was kept apart from them (see `upsert_member`)."""
        owner = members.member_by(session, email=email)
        if owner is None:
            return
        card = Card(
            title=text_for("identity_claimed_title"),
            text=text_for("identity_claimed_text", platform="Teams", name=owner.name),
        )
        notices = for_admins(session, card, key=f"identity-claim:teams:{teams_user_id}:{owner.id}")
        if write_to_outbox(
            session, notices, actor_id=None, now=now, company=self.bot.router.company
        ):
            self.owed = True

    def _forget(self, teams_user_id: str) -> None:
        with self.store.session() as session:
            member = members.member_by(session, teams_user_id=teams_user_id)
            if member is not None:
                members.set_teams_reference(session, member=member, reference=None)
