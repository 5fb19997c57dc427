"""Carrying out effects: private replies through the request's responder, everything
else through the platform messengers, recording where each card lives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, runtime_checkable

from sqlmodel import Session

from bot.core.effects import (
    Effect,
    FormErrors,
    Notify,
    Owed,
    Post,
    Reply,
    ShowForm,
    ShowReport,
    UpdateCards,
)
from bot.core.interaction import Interaction, Person
from bot.core.messages import Card, CardPlace, Form, Report
from bot.core.owing import UpdateLease
from bot.core.router import Router
from storage import members, places
from storage.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Posted:
    """Where a platform put a message."""

    channel: str
    message_id: str
    reference: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Posted:
        return cls(str(data["channel"]), str(data["message_id"]), data.get("reference"))


PartDone = Callable[[str, Posted], Awaitable[None]]
# Records where a card of a Notify went (the outbox batches these with its other writes).
RecordCard = Callable[[Notify, Person, str, Posted], Awaitable[None]]


class Parts:
    """What of one multi-part delivery is done already, and how to record the next part:
    a digest's message and its chart, a DM on each platform that reaches the member. A
    retry sends only what is left, so a failed chart upload never posts the digest again
    and a Teams failure never sends the Slack DM again."""

    def __init__(self, done: Mapping[str, Posted] | None = None, record: PartDone | None = None):
        self.done: dict[str, Posted] = dict(done or {})
        self._record = record
        self._unrecorded: list[str] = []
        self.trying = ""  # the part being sent (named when it fails)

    async def once(self, name: str, send: Callable[[], Awaitable[Posted]]) -> Posted:
        """`send` the part `name` unless it went out before. The parts sent before it are
        recorded before it is tried, so its failure never sends them again; the last part
        needs no record of its own (the message is then marked sent), so a message of one
        part costs no extra write."""
        posted = self.done.get(name)
        if posted is not None:
            return posted
        await self._flush()
        self.trying = name
        posted = await send()
        self.done[name] = posted
        self._unrecorded.append(name)
        self.trying = ""
        return posted

    async def _flush(self) -> None:
        while self._unrecorded and self._record is not None:
            name = self._unrecorded[0]
            await self._record(name, self.done[name])
            self._unrecorded.pop(0)


class Responder(Protocol):
    """Answers the person behind one interaction, on the platform they used."""

    async def reply(self, card: Card) -> None: ...

    async def show_form(self, form: Form) -> None: ...

    async def form_errors(self, errors: dict[str, str]) -> None: ...

    async def report(self, report: Report) -> None: ...


class Messenger(Protocol):
    """Sends on one platform on the bot's own initiative (DMs, channels, updates)."""

    platform: str

    def reaches(self, member: Person) -> bool: ...

    async def send(self, member: Person, card: Card) -> Posted: ...

    async def post(self, channel: str, card: Card) -> Posted: ...

    async def update(self, location: CardPlace, card: Card) -> None: ...

    async def reply_in_thread(self, location: CardPlace, card: Card) -> Posted: ...

    async def post_report(self, channel: str, report: Report) -> Posted: ...


class UpdateSender(Protocol):
    """Sends the card updates a handler leased (`UpdateCards.leased`) from the task that
    ran it, so a click's card changes at once; the outbox is the fallback."""

    @property
    def lease(self) -> UpdateLease: ...

    async def send(self, update: UpdateCards) -> bool:
        """Send them; True when every one went out and nothing newer is owed for them."""
        ...


class LookupFailed(Exception):
    """A directory could not answer (an error, a timeout): not the same as "no such user"."""


@runtime_checkable
class ChartPoster(Protocol):
    """A platform that shows a report's chart as its own message part (Slack uploads it as
    a file after the post; Teams embeds it in the card and has no such part)."""

    async def post_chart(self, posted: Posted, report: Report) -> Posted: ...


@runtime_checkable
class Directory(Protocol):
    """A platform's member directory: finds a member by email and remembers their id.

    False means the directory answered that nobody has that email; when it could not
    answer, `find_by_email` raises `LookupFailed`, so the lookup is retried later."""

    async def find_by_email(self, email: str) -> bool: ...


class Deliverer:
    """Runs the effects of one handler call, in order."""

    def __init__(
        self, store: Store, messengers: Sequence[Messenger], directories: Sequence[Directory] = ()
    ) -> None:
        self.store = store
        self.messengers = {m.platform: m for m in messengers}
        self.directories = directories
        # Called when a handler owed messages to the outbox: the sender drains it now.
        self.on_owed: Callable[[], None] | None = None
        # Sends a handler's card updates at once (a server's outbox sender), if set.
        self.updates: UpdateSender | None = None

    async def deliver(self, effects: Sequence[Effect], responder: Responder | None) -> None:
        sent_at_once = 0
        for effect in effects:
            try:
                if isinstance(effect, Owed) and effect.count <= sent_at_once:
                    continue  # every message owed went out already: no drain needed
                sent_at_once += await self._one(effect, responder)
            except Exception:
                # A platform refused one message; the others still go out. The fact
                # behind it is already committed, so nothing recorded is lost.
                log.exception("delivery of %s failed", type(effect).__name__)

    async def _one(self, effect: Effect, responder: Responder | None) -> int:
        """Carry out one effect; returns how many owed messages it sent itself."""
        match effect:
            case Reply(card=card) if responder is not None:
                await responder.reply(card)
            case ShowForm(form=form) if responder is not None:
                await responder.show_form(form)
            case FormErrors(errors=errors) if responder is not None:
                await responder.form_errors(errors)
            case ShowReport(report=report) if responder is not None:
                await responder.report(report)
            case Notify():
                await self.notify(effect)
            case Post(target=target, card=card):
                await self.post(target, card)
            case Owed():
                if self.on_owed is not None:
                    self.on_owed()
            case UpdateCards(leased=leased) if leased and self.updates is not None:
                # Leased to us with the handler's facts: sent from here, now.
                if await self.updates.send(effect):
                    return len(leased)
            case UpdateCards():
                pass  # owed with the handler's facts (`bot.core.owing`), sent by the outbox
            case _:
                log.warning("effect %s has nobody to answer", type(effect).__name__)
        return 0

    async def notify(
        self,
        effect: Notify,
        parts: Parts | None = None,
        *,
        member: Person | None = None,
        record: RecordCard | None = None,
    ) -> list[tuple[str, Posted]]:
        """Send a DM (or a thread reply) to a member on every platform that reaches them,
        each platform a part of its own (`parts`: what a previous try already sent).

        Returns where it was posted; empty when the member is reachable nowhere. Platform
        errors propagate, so the outbox can retry them. The outbox passes the `member` it
        read with its claim and `record`s where cards went in its own batched writes.
        """
        parts = parts if parts is not None else Parts()
        if member is None or member.id != effect.member_id:
            member = await asyncio.to_thread(self._member, effect.member_id)
        if member is None:
            log.warning("notify: member %s does not exist", effect.member_id)
            return []
        if effect.in_thread and effect.lead_id is not None:
            threads = await asyncio.to_thread(self._locations, effect.lead_id, "handoff")
            mine = [t for t in threads if t.member_id == member.id]
            posted = []
            for location in mine:
                messenger = self.messengers.get(location.platform)
                if messenger is not None:
                    reply = await parts.once(
                        f"{location.platform}:thread:{location.id}",
                        partial(messenger.reply_in_thread, location, effect.card),
                    )
                    posted.append((messenger.platform, reply))
            if posted:
                return posted
        reached = [m for m in self.messengers.values() if m.reaches(member)]
        if not reached and member.email:
            member = await self._look_up(member)
            reached = [m for m in self.messengers.values() if m.reaches(member)]
        if not reached:
            log.warning("member %s is not reachable on any platform", member.id)
        sent = []
        for messenger in reached:
            posted_to = await parts.once(
                messenger.platform, partial(messenger.send, member, effect.card)
            )
            sent.append((messenger.platform, posted_to))
            if effect.lead_id is not None and effect.purpose:
                if record is not None:
                    await record(effect, member, messenger.platform, posted_to)
                else:
                    await asyncio.to_thread(
                        self._record, effect, member, messenger.platform, posted_to
                    )
        return sent

    def _channel(self, target: str) -> tuple[Messenger, str] | None:
        """The messenger and channel of a configured target (`slack:C0123`), if on."""
        platform, _, channel = target.partition(":")
        messenger = self.messengers.get(platform)
        if messenger is None:
            log.warning("no %s adapter for channel %s", platform, target)
            return None
        return messenger, channel

    async def post(
        self, target: str, card: Card, parts: Parts | None = None
    ) -> tuple[str, Posted] | None:
        """Post to a configured channel (`slack:C0123`); None without that platform."""
        found = self._channel(target)
        if found is None:
            return None
        messenger, channel = found
        parts = parts if parts is not None else Parts()
        return messenger.platform, await parts.once(
            messenger.platform, partial(messenger.post, channel, card)
        )

    async def post_report(
        self, target: str, report: Report, parts: Parts | None = None
    ) -> tuple[str, Posted] | None:
        """Post a report (the digest) to a configured channel, then its chart where the
        platform shows it apart, each part once; None without that platform."""
        found = self._channel(target)
        if found is None:
            return None
        messenger, channel = found
        parts = parts if parts is not None else Parts()
        platform = messenger.platform
        posted = await parts.once(platform, partial(messenger.post_report, channel, report))
        if report.chart and isinstance(messenger, ChartPoster):
            await parts.once(f"{platform}:chart", partial(messenger.post_chart, posted, report))
        return platform, posted

    async def _look_up(self, member: Person) -> Person:
        """Find a member known only by email in the platform directories (a directory that
        cannot answer raises `LookupFailed`: the outbox retries the message)."""
        for directory in self.directories:
            if await directory.find_by_email(member.email or ""):
                found = await asyncio.to_thread(self._member, member.id or 0)
                return found or member
        return member

    def _member(self, member_id: int) -> Person | None:
        with self.store.session() as session:
            found = members.get_member(session, member_id=member_id)
            return Person.of(found) if found is not None else None

    def _locations(self, lead_id: int, purpose: str) -> list[CardPlace]:
        with self.store.session() as session:
            found = places.locations_of(session, lead_id=lead_id, purpose=purpose)
            return [CardPlace.of(location) for location in found]

    def _record(self, effect: Notify, member: Person, platform: str, posted: Posted) -> None:
        with self.store.session() as session:
            remember_card(
                session,
                lead_id=effect.lead_id or 0,
                purpose=effect.purpose,
                member_id=member.id,
                platform=platform,
                posted=posted,
                at=datetime.now(UTC),
            )


def remember_card(
    session: Session,
    *,
    lead_id: int,
    purpose: str,
    member_id: int | None,
    platform: str,
    posted: Posted,
    at: datetime,
) -> None:
    """Record where a card about a lead was posted (once), so it can be updated in place."""
    places.record_card_place(
        session,
        lead_id=lead_id,
        purpose=purpose,
        member_id=member_id,
        platform=platform,
        channel=posted.channel,
        message_id=posted.message_id,
        reference=posted.reference,
        at=at,
    )


class Bot:
    """The platform-neutral bot: route an interaction, then deliver what it produced."""

    def __init__(self, store: Store, router: Router, deliverer: Deliverer) -> None:
        self.store = store
        self.router = router
        self.deliverer = deliverer

    async def handle(self, interaction: Interaction, responder: Responder) -> list[Effect]:
        effects = await self.decide(interaction)
        await self.deliverer.deliver(effects, responder)
        return effects

    async def decide(self, interaction: Interaction) -> list[Effect]:
        """Run the handler (and commit its writes) without delivering anything yet."""
        now = datetime.now(UTC)
        updates = self.deliverer.updates
        lease = updates.lease if updates is not None else None
        effects = await asyncio.to_thread(self.router.dispatch, self.store, interaction, now, lease)
        log.info(
            "handled %s %s from member %s on %s: %d effects",
            interaction.kind,
            interaction.name,
            interaction.actor.id,
            interaction.where.platform,
            len(effects),
        )
        return effects
