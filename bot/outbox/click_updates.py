"""A click's card update, sent from the click's own task.

A handler's card updates are owed to the outbox in its transaction, as ever; when this
process sends, they are also leased to its sender there (`bot.core.owing.UpdateLease`), so
the task that ran the handler sends them at once with the card the handler rendered under
that transaction, instead of waking the sender for a claim, a lease renewal and a second
render. The bookkeeping after the send is the sender's own: a send that fails is retried
(or parked) by it, a newer state owed while this one was in flight goes out after it (the
row's revision), and a lease this process never used runs out and any sender takes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.core.delivery import Posted
from bot.core.effects import Leased, UpdateCards
from bot.core.messages import Card
from bot.core.owing import UpdateLease
from bot.outbox.sender import Sender, SendReport
from storage.models import OutboxMessage

log = logging.getLogger(__name__)


class ClickUpdates:
    """`bot.core.delivery.UpdateSender` for a server: leases to `sender`, records through it, and
    `wake`s its loop when a newer state is owed after a send."""

    def __init__(self, sender: Sender, wake: Callable[[], None]) -> None:
        self.sender = sender
        self.wake = wake

    @property
    def lease(self) -> UpdateLease:
        return UpdateLease(self.sender.owner, self.sender.lease.total_seconds())

    async def send(self, update: UpdateCards) -> bool:
        done = True
        for leased in update.leased:
            done = await self._one(leased, update.card) and done
        return done

    async def _one(self, leased: Leased, card: Card) -> bool:
        location = leased.location
        # What the sender's bookkeeping reads of the row it holds.
        message = OutboxMessage(
            id=leased.message_id,
            key=leased.key,
            revision=leased.revision,
            location_id=location.id,
            lead_id=location.lead_id,
            purpose=location.purpose,
            not_before=datetime.now(UTC),
            created_at=datetime.now(UTC),
        )
        report = SendReport()
        messenger = self.sender.deliverer.messengers.get(location.platform)
        if messenger is None:  # that platform is off here: the outbox parks it, as ever
            why = f"no {location.platform} messenger in this process"
            await self.sender._outcome(self.sender._park, message, why, report=report)
            return False
        try:
            await messenger.update(location, card)
        except Exception as error:  # recorded on the row; the sender retries it
            log.info("card update %s failed at once, left to the outbox: %s", leased.key, error)
            now = datetime.now(UTC)
            await self.sender._outcome(self.sender._failed, message, error, now, report=report)
            return False
        posted = (location.platform, Posted(location.channel, location.message_id))
        recorded = await self.sender._outcome(
            self.sender._sent, message, posted, datetime.now(UTC), report=report
        )
        again = recorded == "again"
        if again:
            self.wake()  # a newer state was owed meanwhile: the sender sends it now
        return not again
