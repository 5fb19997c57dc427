"""Plain values the bulk writers take and give (no ORM bookkeeping per row): messages to
owe, leads and events to store, and what storing a lead said."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.models import EventKind


@dataclass(frozen=True)
class NewMessage:
    """A message to owe, as `stored_outbox.enqueue_many` writes it: a pending outbox row. A plain
    value, so a tick's hundreds of them cost no ORM bookkeeping."""

    key: str
    member_id: int | None
    card: dict[str, Any]
    not_before: datetime
    created_at: datetime
    lead_id: int | None = None
    target: str | None = None
    purpose: str = ""
    render: str = ""  # the kind of card rendered when sent (`bot.core.rendering`), if any
    in_thread: bool = False
    request_id: str | None = None  # the request or activity it is owed in


@dataclass(frozen=True)
class NewLead:
    """A lead to store, as `stored_leads.add_leads` writes it (once per source and external id)."""

    source: str
    external_id: str
    name: str
    company: str | None
    email: str | None
    title: str | None
    campaign_id: int | None
    owner_id: int | None
    owner_email: str | None
    definition_id: int
    state: str
    attributes: dict[str, Any]
    created_at: datetime
    handed_off_at: datetime | None


@dataclass(frozen=True)
class StoredLead:
    """What `stored_leads.add_leads` says of one lead: its id, whether this call created it, and
    the owner email stored with it (the sender's, for a lead stored before)."""

    id: int
    created: bool
    owner_email: str | None


@dataclass(frozen=True)
class NewEvent:
    """A lead event to append, as `stored_leads.add_events` writes it (many in one statement)."""

    lead_id: int
    kind: EventKind
    at: datetime
    member_id: int | None = None
    data: dict[str, Any] | None = None
