"""The admin hears, privately and once, when messages are parked (a platform keeps failing)
and once when they have all been delivered again.

An episode starts when the first message is parked and ends when none is left parked or
being tried again; its state is one company setting, read under a row lock, and its notices
are outbox rows with keys made of the episode's number, so two senders reviewing at once
owe each notice once.

Messages that failed for good (the platform refused them, or their recipient is reachable
nowhere) are not retried on their own; the admin hears of each new batch of them once
(`review_refused`), so nothing is given up silently. The state and the counts are read and
written by storage/outbox_alerts.py."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.core.business_time import Company
from bot.core.messages import Card
from bot.core.owing import for_admins, write_to_outbox
from bot.core.text import text_for
from storage import channels
from storage.models import CompanySetting
from storage.outbox_alerts import (
    KEY_PREFIX,
    STATE_KEY,
    delivered_since,
    locked_state,
    outstanding,
    refused_after,
    save_state,
)

log = logging.getLogger(__name__)


def review(
    session: Session, *, now: datetime, admin_channel: str | None, retry_for: timedelta
) -> None:
    """Start or end the parked-messages episode, owing the admin's notice for the change."""
    parked, first = outstanding(session, now=now, retry_for=retry_for)
    seen = session.get(CompanySetting, STATE_KEY)
    episode_open = seen is not None and json.loads(seen.value).get("since") is not None
    if episode_open == bool(parked):
        return  # no change (nothing parked, nothing ever was): no lock taken, nothing written
    state = locked_state(session)
    value = json.loads(state.value)
    since = value.get("since")
    if since is None and parked:
        started = first or now
        value = {**value, "episode": int(value.get("episode", 0)) + 1, "since": started.isoformat()}
        card = Card(
            title=text_for("outbox_parked_title", count=parked),
            text=text_for("outbox_parked_text"),
        )
        _tell(session, card, f"{KEY_PREFIX}{value['episode']}:parked", now, admin_channel)
    elif since is not None and not parked:
        delivered = delivered_since(session, since=datetime.fromisoformat(since))
        if delivered:
            card = Card(
                title=text_for("outbox_recovered_title", count=delivered),
                text=text_for("outbox_recovered_text", since=datetime.fromisoformat(since)),
            )
            _tell(session, card, f"{KEY_PREFIX}{value['episode']}:delivered", now, admin_channel)
        else:
            log.error("outbox: parked messages were given up after %s, none delivered", retry_for)
        value = {**value, "since": None}
    else:
        return
    save_state(session, state=state, value=value)


def review_refused(session: Session, *, now: datetime, admin_channel: str | None) -> None:
    """Owe the admin one notice for the messages that failed for good since the last one."""
    seen = session.get(CompanySetting, STATE_KEY)
    upto = int(json.loads(seen.value).get("refused_upto", 0)) if seen is not None else 0
    if not refused_after(session, after=upto):
        return  # nothing new: no lock taken, nothing written
    state = locked_state(session)
    value = json.loads(state.value)
    upto = int(value.get("refused_upto", 0))
    rows = refused_after(session, after=upto)
    if not rows:
        return  # another sender told the admin meanwhile
    newest = max(row.id or 0 for row in rows)
    card = Card(
        title=text_for("outbox_refused_title", count=len(rows)),
        text=text_for("outbox_refused_text", reason=(rows[-1].last_error or "")[:200]),
    )
    _tell(session, card, f"{KEY_PREFIX}refused:{newest}", now, admin_channel)
    save_state(session, state=state, value={**value, "refused_upto": newest})


def _tell(session: Session, card: Card, key: str, now: datetime, admin_channel: str | None) -> None:
    """Owe `card` to every admin (a DM) and to the admin channel, if one is set, at once."""
    target = channels.channel_target(session, kind="admin") or admin_channel
    effects = for_admins(session, card, key=key, channel=target)
    if not effects:
        log.warning(
            "outbox: %s, and no admin to tell; set one with `liaison members set EMAIL "
            "--role admin`",
            card.title,
        )
    # Not a nudge: it goes at once, whatever the company's working hours.
    write_to_outbox(session, effects, actor_id=None, now=now, company=Company())
