"""Reads for drawing many leads' cards at once (an outbox claim's): each a query for all the
leads, never one per lead."""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from storage.models import Campaign, Clock, Lead, LeadDefinition, LeadEvent

IN_CHUNK = 2000  # ids named in one IN list at most


def _chunks(ids: Collection[int]) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[at : at + IN_CHUNK] for at in range(0, len(ordered), IN_CHUNK)]


def events_by_lead(session: Session, *, lead_ids: Collection[int]) -> dict[int, list[LeadEvent]]:
    """Each lead's events in the order `stored_leads.events_of` gives them (an empty list for
    none)."""
    found: dict[int, list[LeadEvent]] = {lead_id: [] for lead_id in lead_ids}
    for chunk in _chunks(lead_ids):
        rows = session.exec(
            select(LeadEvent)
            .where(col(LeadEvent.lead_id).in_(chunk))
            .order_by(col(LeadEvent.lead_id), col(LeadEvent.at), col(LeadEvent.id))
        ).all()
        for row in rows:
            found[row.lead_id].append(row)
    return found


def open_clocks_by_lead(session: Session, *, lead_ids: Collection[int]) -> dict[int, list[Clock]]:
    """Each lead's open clocks, of every kind, oldest first (`stored_clocks.open_clocks` without
    a lock), in one query."""
    found: dict[int, list[Clock]] = {lead_id: [] for lead_id in lead_ids}
    for chunk in _chunks(lead_ids):
        rows = session.exec(
            select(Clock)
            .where(col(Clock.lead_id).in_(chunk), col(Clock.closed_at).is_(None))
            .order_by(col(Clock.lead_id), col(Clock.id))
        ).all()
        for row in rows:
            found[row.lead_id].append(row)
    return found


def campaign_names(session: Session, *, ids: Collection[int]) -> dict[int, str]:
    """The names of these campaigns, by id."""
    found: dict[int, str] = {}
    for chunk in _chunks(ids):
        rows = session.exec(select(Campaign.id, Campaign.name).where(col(Campaign.id).in_(chunk)))
        found.update({campaign_id or 0: name for campaign_id, name in rows.all()})
    return found


def definition_versions(session: Session, *, ids: Collection[int]) -> dict[int, int]:
    """The version of each of these lead definitions, by id."""
    found: dict[int, int] = {}
    for chunk in _chunks(ids):
        rows = session.exec(
            select(LeadDefinition.id, LeadDefinition.version).where(
                col(LeadDefinition.id).in_(chunk)
            )
        )
        found.update({definition_id or 0: version for definition_id, version in rows.all()})
    return found


def card_stamps(session: Session, *, lead_ids: Collection[int]) -> dict[int, Hashable]:
    """For each lead that exists, what its handoff card is drawn from that can change, in
    brief: its state, attempts, owner and campaign, its newest event and how many clocks it
    has open (a verdict, attempt, question, answer or snooze adds an event; clocks start
    and close with them). Equal stamps, same card (as of the same moment). Three grouped
    queries for all the leads (a correlated max() per lead leads PostgreSQL's planner to
    walk the events' primary key backwards)."""
    found: dict[int, Hashable] = {}
    for chunk in _chunks(lead_ids):
        leads = session.execute(
            sa_select(
                col(Lead.id),
                col(Lead.state),
                col(Lead.attempts),
                col(Lead.owner_id),
                col(Lead.campaign_id),
            ).where(col(Lead.id).in_(chunk))
        ).all()
        newest: dict[int, int] = dict(
            session.execute(
                sa_select(col(LeadEvent.lead_id), func.max(LeadEvent.id))
                .where(col(LeadEvent.lead_id).in_(chunk))
                .group_by(col(LeadEvent.lead_id))
            ).all()
        )
        clocks: dict[int, int] = dict(
            session.execute(
                sa_select(col(Clock.lead_id), func.count())
                .where(col(Clock.lead_id).in_(chunk), col(Clock.closed_at).is_(None))
                .group_by(col(Clock.lead_id))
            ).all()
        )
        for lead_id, *lead in leads:
            found[int(lead_id)] = _stamp(*lead, newest.get(lead_id), clocks.get(lead_id, 0))
    return found


def _stamp(*values: Any) -> Hashable:
    return tuple(values)


def stamp_of(lead: Lead, events: list[LeadEvent], clocks: list[Clock]) -> Hashable:
    """`card_stamps`' stamp of a lead read with these events and open clocks."""
    newest = max((event.id or 0 for event in events), default=None)
    return _stamp(lead.state, lead.attempts, lead.owner_id, lead.campaign_id, newest, len(clocks))
