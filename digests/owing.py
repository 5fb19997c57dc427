"""Messages the bot starts on its own (DMs to others, channel posts) are owed, not sent:
they become outbox rows in the same transaction as the facts behind them, so a crash or a
platform outage never loses one, and a DM waits for its recipient's working hours."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from bot.effects import Effect, Notify, Owed, Post
from bot.messages import card_to_dict
from digests.business_time import Company, next_working_moment
from digests.calendars import Calendars
from storage import queries
from storage.models import Member, OutboxMessage

log = logging.getLogger(__name__)


def owe(
    session: Session,
    effects: Sequence[Effect],
    *,
    actor_id: int | None,
    now: datetime,
    company: Company,
) -> list[Effect]:
    """Write DMs to anyone but `actor_id`, and channel posts, to the outbox; return the
    effects still to deliver at once, with an `Owed` marker when anything was written."""
    calendars: Calendars | None = None
    kept: list[Effect] = []
    owed = 0
    for effect in effects:
        if isinstance(effect, Notify) and effect.member_id != actor_id:
            calendars = calendars or Calendars(session, company)
            owed += _owe_dm(session, effect, now, calendars)
        elif isinstance(effect, Post):
            owed += _owe_post(session, effect, now)
        else:
            kept.append(effect)
    if owed:
        kept.append(Owed(owed))
    return kept


def _key(given: str) -> str:
    return given or f"fx:{uuid.uuid4().hex}"


def _owe_dm(session: Session, effect: Notify, now: datetime, calendars: Calendars) -> int:
    member = session.get(Member, effect.member_id)
    if member is None:
        log.warning("a message for member %s, who does not exist, was dropped", effect.member_id)
        return 0
    try:
        not_before = next_working_moment(calendars.of(member), now)
    except ValueError:  # no working time at all: better late at night than never
        not_before = now
    message = OutboxMessage(
        key=_key(effect.key),
        member_id=member.id,
        card=card_to_dict(effect.card),
        lead_id=effect.lead_id,
        purpose=effect.purpose,
        in_thread=effect.in_thread,
        not_before=not_before,
        created_at=now,
    )
    return int(queries.enqueue(session, message=message))


def _owe_post(session: Session, effect: Post, now: datetime) -> int:
    message = OutboxMessage(
        key=_key(effect.key),
        target=effect.target,
        card=card_to_dict(effect.card),
        not_before=now,
        created_at=now,
    )
    return int(queries.enqueue(session, message=message))
