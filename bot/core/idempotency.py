"""What lets the outbox check a platform before sending a message again.

The sender sets `OUTBOX_KEY` while it delivers an outbox row; a messenger that can attach
it to what it posts (Slack message metadata) does, and can later say whether a message with
that key is already in a conversation (`Recall`). A messenger that can do neither (Teams:
the Bot Framework connector has no way to list a bot's sent activities) is sent to again
when the first send's outcome is unknown.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import Protocol, runtime_checkable

from bot.core.delivery import Posted
from bot.core.interaction import Person

# The outbox key of the message being delivered in this task, if any.
OUTBOX_KEY: ContextVar[str | None] = ContextVar("liaison_outbox_key", default=None)
# Slack message metadata: `event_type` of Liaison's outbox messages, key in `event_payload`.
METADATA_EVENT = "liaison_outbox"


@runtime_checkable
class Recall(Protocol):
    """A platform that can tell whether a message with an outbox key was already posted."""

    platform: str

    async def recall(
        self,
        *,
        key: str,
        member: Person | None,
        channel: str | None,
        since: datetime,
        thread: str | None = None,
    ) -> Posted | None: ...


@runtime_checkable
class Probe(Protocol):
    """A platform that can say cheaply whether it answers (Slack `auth.test`)."""

    platform: str

    async def healthy(self) -> bool: ...
