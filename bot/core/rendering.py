"""Cards rendered when they are sent: an owed card about a lead is an intent (which lead,
which purpose, for whom) and is built from the lead's state at the moment it goes out, so
a card that waited shows what is true then, not what was true when it was owed.

Handlers register a renderer per kind of card; the outbox sender asks this registry, so
it never needs to know the handlers. The kind of a purpose is its part before `:`
(`handoff`, `question:<id>` → `question`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session

from bot.core.business_time import Company
from bot.core.messages import Card, card_from_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """What to render: the card of `purpose` about `lead_id`, for `member_id`, as of `now`."""

    lead_id: int
    purpose: str
    member_id: int | None
    now: datetime
    company: Company


# The card as of now; None when there is nothing left to show (the lead is gone).
Renderer = Callable[[Session, Intent], Card | None]

_renderers: dict[str, Renderer] = {}


@dataclass(frozen=True)
class Reader:
    """How to draw many cards of a kind without SQL per card: `read` what the cards of these
    leads are drawn from, in a few queries for all of them (facts per lead; a lead left out
    has nothing to draw); `stamps` reads, in one query, what of it may have changed since
    (a lead left out is gone), to compare with `stamp` of the facts; `draw` a card from the
    facts (None: nothing to show), reading nothing."""

    read: Callable[[Session, Collection[int], Company], Mapping[int, Any]]
    stamps: Callable[[Session, Collection[int]], Mapping[int, Hashable]]
    stamp: Callable[[Any], Hashable]
    draw: Callable[[Any, Intent], Card | None]


_readers: dict[str, Reader] = {}


class NothingToRender(LookupError):
    """An owed card whose lead (or question) no longer exists, or of an unknown kind."""


def kind_of(purpose: str) -> str:
    return purpose.partition(":")[0]


def register(kind: str, renderer: Renderer, reader: Reader | None = None) -> None:
    """Render cards of `kind` with `renderer`, and, given a `reader`, draw many of them
    from facts read for all at once (registering again replaces both)."""
    _renderers[kind] = renderer
    if reader is None:
        _readers.pop(kind, None)
    else:
        _readers[kind] = reader


def reader_of(purpose: str) -> Reader | None:
    """The reader of cards of this purpose, if their kind has one."""
    return _readers.get(kind_of(purpose)) if purpose else None


def draw(facts: Any, intent: Intent) -> Card:
    """The card of `intent` drawn from `facts` its kind's reader read; NothingToRender when
    there is nothing to show."""
    reader = _readers.get(kind_of(intent.purpose))
    card = reader.draw(facts, intent) if reader is not None else None
    if card is None:
        raise NothingToRender(f"lead {intent.lead_id} has no {intent.purpose!r} card any more")
    return card


def renders(purpose: str) -> bool:
    """Whether cards of this purpose are rendered when sent."""
    return bool(purpose) and kind_of(purpose) in _renderers


def render(session: Session, intent: Intent) -> Card:
    """The card as of `intent.now`; NothingToRender when it cannot be built."""
    renderer = _renderers.get(kind_of(intent.purpose))
    if renderer is None:
        raise NothingToRender(f"no renderer for cards of purpose {intent.purpose!r}")
    card = renderer(session, intent)
    if card is None:
        raise NothingToRender(f"lead {intent.lead_id} has no {intent.purpose!r} card any more")
    return card


class OwedCard(Protocol):
    """What of an owed message (an outbox row) says which card it sends."""

    @property
    def key(self) -> str: ...
    @property
    def lead_id(self) -> int | None: ...
    @property
    def purpose(self) -> str: ...
    @property
    def render(self) -> str: ...
    @property
    def card(self) -> dict[str, Any]: ...


def card_of(
    session: Session,
    message: OwedCard,
    *,
    member_id: int | None,
    now: datetime,
    company: Company,
) -> Card:
    """What an outbox row sends: rendered now when it holds an intent, else its stored card
    (rows written before cards were rendered at send time hold only the card)."""
    if message.render and message.lead_id is not None:
        if kind_of(message.purpose) in _renderers:
            intent = Intent(message.lead_id, message.purpose, member_id, now, company)
            return render(session, intent)
        # A process that never loaded the handlers: better the card as owed than none.
        log.warning("outbox %s: no renderer for %r, sent as owed", message.key, message.render)
    return card_from_dict(message.card)
