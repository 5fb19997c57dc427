"""Messages the bot starts on its own (DMs to others, channel posts, card updates) are owed,
not sent: they become outbox rows in the same transaction as the facts behind them, so a
crash or a platform outage never loses one.

A message a person caused for someone else goes out at once; only a nudge waits for its
recipient's working hours. A card about a lead is owed as an intent and rendered when it
is sent (`bot.core.rendering`), so it shows the lead as it is then."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.core import rendering
from bot.core.business_time import Company, next_working_moment
from bot.core.effects import Effect, Leased, Notify, Owed, Post, UpdateCards
from bot.core.logs import request_id
from bot.core.messages import Card, CardPlace, card_to_dict
from storage import members as stored_members
from storage import outbox as stored_outbox
from storage import verdicts
from storage.calendars import Calendars, WorkingWeek
from storage.values import NewMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateLease:
    """Card updates a handler owes are leased to `owner` (this process's outbox sender) for
    `seconds` in the handler's own transaction, so the click's task can send them at once
    without another claim; a lease it never uses runs out and any sender takes the row."""

    owner: str
    seconds: float


def write_to_outbox(
    session: Session,
    effects: Sequence[Effect],
    *,
    actor_id: int | None,
    now: datetime,
    company: Company,
    lease: UpdateLease | None = None,
    members: Mapping[int, WorkingWeek] | None = None,
) -> list[Effect]:
    """Write DMs to anyone but `actor_id`, channel posts and card updates to the outbox;
    return the effects still to deliver at once, with an `Owed` marker when anything was
    written. Consecutive DMs are written with one statement (a batch of handoff cards),
    in the order given. With `lease`, the card updates due now are leased to its owner and
    listed on the `UpdateCards` effect (`leased`) for the caller to send. `members`: those
    of the recipients the caller read in this transaction already (not read again)."""
    calendars: Calendars | None = None
    kept: list[Effect] = []
    owed = 0
    dms = [e for e in effects if isinstance(e, Notify) and e.member_id != actor_id]
    known = members or {}
    recipients = {e.member_id for e in dms}
    members = {m: known[m] for m in recipients if m in known}
    members.update(stored_members.members_by_id(session, ids=recipients - members.keys()))
    waiting: list[NewMessage] = []
    for effect in effects:
        if isinstance(effect, Notify) and effect.member_id != actor_id:
            member = members.get(effect.member_id)
            if member is None:
                log.warning(
                    "a message for member %s, who does not exist, was dropped", effect.member_id
                )
                continue
            if effect.nudge:
                calendars = calendars or Calendars(session, company)
            waiting.append(_dm(effect, member, now, calendars))
            continue
        owed += _write(session, waiting)
        waiting = []
        if isinstance(effect, Post):
            owed += _owe_post(session, effect, now)
        elif isinstance(effect, UpdateCards):
            leased = _owe_updates(session, effect, now, lease)
            owed += len(leased)
            # A record of what changed (its cards are owed), with the updates leased to us.
            kept.append(replace(effect, leased=tuple(x for x in leased if x is not None)))
        else:
            kept.append(effect)
    owed += _write(session, waiting)
    if owed:
        kept.append(Owed(owed))
    return kept


def for_admins(
    session: Session, card: Card, *, key: str = "", nudge: bool = False, channel: str | None = None
) -> list[Effect]:
    """`card` privately to every admin, and to `channel` (the admin channel) when given: the
    effects to owe it. With `key`, each is keyed apart (`<key>:member:<id>`, `<key>:channel`),
    so telling them twice is impossible and no admin's notice stands in for another's."""
    effects: list[Effect] = [
        Notify(admin_id, card, key=f"{key}:member:{admin_id}" if key else "", nudge=nudge)
        for admin_id in stored_members.admin_ids(session)
    ]
    if channel:
        effects.append(Post(channel, card, key=f"{key}:channel" if key else ""))
    return effects


def _key(given: str) -> str:
    return given or f"fx:{uuid.uuid4().hex}"


def _dm(
    effect: Notify, member: WorkingWeek, now: datetime, calendars: Calendars | None
) -> NewMessage:
    return NewMessage(
        key=_key(effect.key),
        member_id=member.id,
        card=card_to_dict(effect.card),
        lead_id=effect.lead_id,
        purpose=effect.purpose,
        in_thread=effect.in_thread,
        render=_render(effect.lead_id, effect.purpose),
        not_before=_not_before(effect, member, now, calendars),
        created_at=now,
        request_id=request_id.get(),
    )


def _write(session: Session, messages: Sequence[NewMessage]) -> int:
    return len(stored_outbox.enqueue_many(session, messages=messages)) if messages else 0


def _not_before(
    effect: Notify, member: WorkingWeek, now: datetime, calendars: Calendars | None
) -> datetime:
    """At once, unless it is a nudge: then at the recipient's next working moment."""
    if not effect.nudge or calendars is None:
        return now
    try:
        return next_working_moment(calendars.of(member), now)
    except ValueError:  # no working time at all: better late at night than never
        return now


def _render(lead_id: int | None, purpose: str) -> str:
    """The kind of card rendered when sent, for a card about a lead that has one."""
    return rendering.kind_of(purpose) if lead_id is not None and rendering.renders(purpose) else ""


def _owe_updates(
    session: Session,
    effect: UpdateCards,
    now: datetime,
    lease: UpdateLease | None,
) -> list[Leased | None]:
    """One update per place the card was posted, coalesced with any still owed there; for
    each, the lease taken on it (None when not leased: no `lease`, or the row is in flight
    with another sender or waits out a retry, and the outbox sends it)."""
    locations = verdicts.locations_of(session, lead_id=effect.lead_id, purpose=effect.purpose)
    card, render = card_to_dict(effect.card), _render(effect.lead_id, effect.purpose)
    owed: list[Leased | None] = []
    for location in locations:
        message_id, revision = stored_outbox.owe_update(
            session, location=location, card=card, render=render, now=now
        )
        leased = lease is not None and stored_outbox.lease_update(
            session,
            message_id=message_id,
            owner=lease.owner,
            until=now + timedelta(seconds=lease.seconds),
            now=now,
        )
        key = stored_outbox.update_key(location.id or 0)
        place = CardPlace.of(location)
        owed.append(Leased(message_id, key, revision, place) if leased else None)
    return owed


def _owe_post(session: Session, effect: Post, now: datetime) -> int:
    owed = stored_outbox.owe_post(
        session,
        key=_key(effect.key),
        target=effect.target,
        card=card_to_dict(effect.card),
        now=now,
        request_id=request_id.get(),
    )
    return int(owed)
