"""Leads and their events: stored in bulk, moved between states, verdicts and attempts."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, and_, func, insert, or_, tuple_, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage import arrays
from storage.models import (
    Campaign,
    Clock,
    EventKind,
    Lead,
    LeadEvent,
    LeadRejection,
    LeadState,
    Member,
)
from storage.sql import chunks
from storage.values import NewEvent, NewLead, StoredLead


def find_lead(session: Session, *, source: str, external_id: str) -> Lead | None:
    return session.exec(
        select(Lead).where(Lead.source == source, Lead.external_id == external_id)
    ).first()


def members_by_email(session: Session, *, emails: Collection[str]) -> dict[str, Member]:
    """The members with these (lower-case) emails, by email, in one query per chunk."""
    found: dict[str, Member] = {}
    for chunk in chunks(sorted(emails)):
        for member in session.exec(select(Member).where(col(Member.email).in_(chunk))).all():
            found[member.email or ""] = member
    return found


@cache
def _insert_campaigns_statement(dialect: str) -> Insert:
    table = Campaign.__table__  # type: ignore[attr-defined]
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(table).on_conflict_do_nothing()


# One statement: insert the names nobody has, in name order, and read every one's id. A name
# a racer committed after the statement began is left out (its insert waited, then did
# nothing; the statement's snapshot cannot see it): read again after.
_ENSURE_CAMPAIGNS = sql_text(
    "WITH wanted AS (SELECT unnest(CAST(:names AS varchar[])) AS name), "
    "added AS (INSERT INTO campaigns (name) SELECT name FROM wanted ORDER BY name "
    "ON CONFLICT DO NOTHING RETURNING id, name) "
    "SELECT name, id FROM added "
    "UNION ALL SELECT campaigns.name, campaigns.id FROM campaigns JOIN wanted USING (name)"
)


def ensure_campaigns(session: Session, *, names: Collection[str]) -> dict[str, int]:
    """The id of each campaign of these names, creating those nobody has (in name order, so
    concurrent callers wait for each other rather than deadlock; each name gets one row).
    On PostgreSQL one statement, usually."""
    ordered = sorted(set(names))
    if not ordered:
        return {}
    connection = session.connection()
    found: dict[str, int] = {}
    if connection.dialect.name == "postgresql":
        rows = connection.execute(_ENSURE_CAMPAIGNS, {"names": ordered})
        found = {str(name): int(campaign_id) for name, campaign_id in rows.all()}
        if len(found) == len(ordered):
            return found
    else:
        statement = _insert_campaigns_statement(connection.dialect.name)
        connection.execute(statement, [{"name": name} for name in ordered])
    missing = [name for name in ordered if name not in found]
    again = session.exec(select(Campaign.id, Campaign.name).where(col(Campaign.name).in_(missing)))
    found.update({name: campaign_id or 0 for campaign_id, name in again.all()})
    return found


@cache
def _insert_leads_statement(dialect: str) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id, source, external_id` on leads: sent as
    multi-row VALUES (SQLAlchemy's insertmanyvalues), a conflicting row returns nothing."""
    table = Lead.__table__  # type: ignore[attr-defined]
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(table)
        .on_conflict_do_nothing()
        .returning(table.c.id, table.c.source, table.c.external_id)
    )


LEAD_COLUMNS = (*(f.name for f in fields(NewLead)), "attempts")


def _insert_leads(session: Session, leads: Sequence[NewLead]) -> list[tuple[Any, ...]]:
    """Insert the leads in the order given, those whose key exists already left out:
    (id, source, external_id) of each written. On PostgreSQL one statement of a fixed
    shape (an array per column), elsewhere a multi-row INSERT."""
    connection = session.connection()
    rows = [(*(getattr(lead, name) for name in LEAD_COLUMNS[:-1]), 0) for lead in leads]
    if connection.dialect.name == "postgresql":
        return arrays.insert_rows(
            session,
            table=Lead.__table__,  # type: ignore[attr-defined]
            columns=LEAD_COLUMNS,
            rows=rows,
            conflict=(),
            returning=("id", "source", "external_id"),
        )
    statement = _insert_leads_statement(connection.dialect.name)
    result = connection.execute(statement, [dict(zip(LEAD_COLUMNS, r, strict=True)) for r in rows])
    return [tuple(row) for row in result.all()]


def add_leads(session: Session, *, leads: Sequence[NewLead]) -> list[StoredLead]:
    """Store the leads whose `(source, external_id)` is not stored yet, in one multi-row
    INSERT, and read the others back in one query: per lead given, in that order, its id
    and whether this call created it. A key given twice is created once (its first time).

    Rows are written in `(source, external_id)` order whatever the order given, so two
    batches racing on the same leads wait for each other instead of deadlocking; a lead a
    racer stored first (committed meanwhile) is read back as not created."""
    first: dict[tuple[str, str], NewLead] = {}
    for lead in leads:
        first.setdefault((lead.source, lead.external_id), lead)
    ordered = [first[key] for key in sorted(first)]
    stored: dict[tuple[str, str], StoredLead] = {}
    if ordered:
        session.flush()
        for lead_id, source, external_id in _insert_leads(session, ordered):
            owner = first[(source, external_id)].owner_email
            stored[(source, external_id)] = StoredLead(lead_id, True, owner)
    missing = [key for key in first if key not in stored]
    for chunk in chunks(missing):
        found = session.exec(
            select(Lead.id, Lead.source, Lead.external_id, Lead.owner_email).where(
                tuple_(col(Lead.source), col(Lead.external_id)).in_(list(chunk))
            )
        ).all()
        for lead_id, source, external_id, owner_email in found:
            stored[(source, external_id)] = StoredLead(lead_id or 0, False, owner_email)
    answers: list[StoredLead] = []
    seen: set[tuple[str, str]] = set()
    for lead in leads:
        key = (lead.source, lead.external_id)
        assert key in stored, f"lead {key} neither new nor found"
        found_lead = stored[key]
        answers.append(found_lead if key not in seen else _mentioned_again(found_lead))
        seen.add(key)
    return answers


def _mentioned_again(lead: StoredLead) -> StoredLead:
    """The same lead, as seen by a later mention of it in the same batch: not created."""
    return StoredLead(lead.id, False, lead.owner_email)


def add_events(session: Session, *, events: Sequence[NewEvent]) -> None:
    """Append these lead events with one executemany INSERT."""
    if not events:
        return
    session.flush()
    table = LeadEvent.__table__  # type: ignore[attr-defined]
    columns = ("lead_id", "kind", "member_id", "at", "data")
    rows = [(e.lead_id, e.kind.value, e.member_id, e.at, e.data or {}) for e in events]
    if session.get_bind().dialect.name == "postgresql":
        arrays.insert_rows(session, table=table, columns=columns, rows=rows)
        return
    session.connection().execute(
        insert(table), [dict(zip(columns, row, strict=True)) for row in rows]
    )


@cache
def _insert_clocks_statement(dialect: str) -> Insert:
    table = Clock.__table__  # type: ignore[attr-defined]
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(table).on_conflict_do_nothing()


def start_clocks(session: Session, *, rows: Sequence[dict[str, Any]]) -> None:
    """Store new clocks (rows of `sla_clocks` columns) with one executemany INSERT; a
    (lead, kind, ref) clock that exists already is left as it is."""
    if not rows:
        return
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns = tuple(rows[0])
        arrays.insert_rows(
            session,
            table=Clock.__table__,  # type: ignore[attr-defined]
            columns=columns,
            rows=[tuple(row[c] for c in columns) for row in rows],
            conflict=(),
        )
        return
    connection.execute(_insert_clocks_statement(connection.dialect.name), list(rows))


def take_routing(session: Session, *, emails: Collection[str]) -> list[Lead]:
    """The `routing` leads of these owner emails, oldest first, locked for this transaction.

    On PostgreSQL `FOR UPDATE SKIP LOCKED`: leads another instance is moving right now are
    left to it (never waited for, never moved twice); SQLite's write lock serialises."""
    leads: list[Lead] = []
    for chunk in chunks(sorted(emails)):
        leads += session.exec(
            select(Lead)
            .where(Lead.state == LeadState.routing.value, col(Lead.owner_email).in_(chunk))
            .order_by(col(Lead.id))
            .with_for_update(skip_locked=True)
        ).all()
    return sorted(leads, key=lambda lead: lead.id or 0)


def move_leads(
    session: Session, *, lead_ids: Sequence[int], to: str, owner_id: int | None, now: datetime
) -> set[int]:
    """Move these leads out of `routing` (handed to `owner_id`, or unassigned), each only if
    it is still routing; the ids that moved."""
    values: dict[str, Any] = {"state": to}
    if owner_id is not None:
        values.update(owner_id=owner_id, handed_off_at=now)
    moved: set[int] = set()
    for chunk in chunks(sorted(lead_ids)):
        result = session.execute(
            update(Lead)
            .where(col(Lead.id).in_(chunk), col(Lead.state) == LeadState.routing.value)
            .values(**values)
            .returning(col(Lead.id))
            .execution_options(synchronize_session=False)
        )
        moved.update(int(row[0]) for row in result.all())
    return moved


_HAND_LEADS = sql_text(
    "UPDATE leads SET state = :to, owner_id = moves.owner_id, handed_off_at = :now "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:owners AS integer[])) AS moves (id, owner_id) "
    "WHERE leads.id = moves.id AND leads.state = :routing RETURNING leads.id"
)


def hand_leads(session: Session, *, owners: Mapping[int, int], now: datetime) -> set[int]:
    """Hand routing leads to their owners (`owners`: lead id → member id), each only if it
    is still routing; the ids that moved. On PostgreSQL one statement for any number of
    owners, elsewhere one per owner (`move_leads`)."""
    if not owners:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        groups: dict[int, list[int]] = {}
        for lead_id, owner_id in owners.items():
            groups.setdefault(owner_id, []).append(lead_id)
        moved: set[int] = set()
        for owner_id, lead_ids in groups.items():
            moved |= move_leads(
                session,
                lead_ids=lead_ids,
                to=LeadState.handed_off.value,
                owner_id=owner_id,
                now=now,
            )
        return moved
    ids = sorted(owners)
    result = session.connection().execute(
        _HAND_LEADS,
        {
            "to": LeadState.handed_off.value,
            "now": now,
            "ids": ids,
            "owners": [owners[lead_id] for lead_id in ids],
            "routing": LeadState.routing.value,
        },
    )
    return {int(row[0]) for row in result.all()}


def add_event(
    session: Session,
    *,
    lead_id: int,
    kind: EventKind,
    now: datetime,
    member_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> LeadEvent:
    event = LeadEvent(
        lead_id=lead_id, kind=kind.value, member_id=member_id, at=now, data=data or {}
    )
    session.add(event)
    session.flush()
    return event


OUTCOME_RANK = {"meeting_booked": 1, "opportunity": 2, "won": 3}

CONVERTED = tuple(OUTCOME_RANK)  # a meeting or better

DECISIVE = (*CONVERTED, "lost")  # the buyer has answered, one way or the other


def better_outcome(best: str | None, outcome: str) -> str | None:
    """The lead's best outcome so far: won > opportunity > meeting; lost only if nothing."""
    if outcome == "lost":
        return best or "lost"
    if outcome in OUTCOME_RANK and OUTCOME_RANK[outcome] > OUTCOME_RANK.get(best or "", 0):
        return outcome
    return best


def record_verdict(
    session: Session,
    *,
    lead: Lead,
    member_id: int | None,
    now: datetime,
    accepted: bool,
    reasons: Sequence[tuple[str, str]] = (),
    definition_version: int = 1,
    comment: str = "",
) -> LeadEvent:
    """A verdict as an event, with its projections: the lead's verdict time and one row per
    failed criterion (what the digest counts by campaign and lead-definition version)."""
    if accepted:
        event = add_event(
            session, lead_id=lead.id or 0, kind=EventKind.accepted, member_id=member_id, now=now
        )
    else:
        event = add_event(
            session,
            lead_id=lead.id or 0,
            kind=EventKind.not_a_fit,
            member_id=member_id,
            now=now,
            data={
                "criteria": [key for key, _ in reasons],
                "criteria_text": [text for _, text in reasons],
                "comment": comment,
                "definition_version": definition_version,
            },
        )
        for key, text in reasons:
            session.add(
                LeadRejection(
                    lead_id=lead.id or 0,
                    campaign_id=lead.campaign_id,
                    definition_version=definition_version,
                    criterion=key,
                    text=text,
                    at=now,
                )
            )
    if lead.verdict_at is None:
        lead.verdict_at = now
        session.add(lead)
    return event


def record_attempt(
    session: Session,
    *,
    lead: Lead,
    member_id: int | None,
    now: datetime,
    channel: str,
    outcome: str,
    note: str = "",
) -> LeadEvent:
    """A follow-up attempt as an event, with the lead's count, first touch and best outcome."""
    event = add_event(
        session,
        lead_id=lead.id or 0,
        kind=EventKind.attempt_logged,
        member_id=member_id,
        now=now,
        data={"channel": channel, "outcome": outcome, "note": note},
    )
    lead.attempts += 1
    lead.first_touch_at = lead.first_touch_at or now
    lead.outcome = better_outcome(lead.outcome, outcome)
    session.add(lead)
    return event


def events_of(session: Session, *, lead_id: int, kind: EventKind | None = None) -> list[LeadEvent]:
    query = select(LeadEvent).where(LeadEvent.lead_id == lead_id)
    if kind is not None:
        query = query.where(LeadEvent.kind == kind.value)
    return list(session.exec(query.order_by(col(LeadEvent.at), col(LeadEvent.id))).all())


def count_events(session: Session, *, lead_id: int, kind: EventKind) -> int:
    return session.exec(
        select(func.count())
        .select_from(LeadEvent)
        .where(LeadEvent.lead_id == lead_id, LeadEvent.kind == kind.value)
    ).one()


def move_lead(session: Session, *, lead: Lead, to: str, allowed_from: Sequence[str]) -> bool:
    """Change a lead's state only if it is still in one of `allowed_from`, atomically.

    A conditional UPDATE, so two racing verdicts (two instances, a double click) cannot
    both win on PostgreSQL; False means someone else moved it first.
    """
    result = session.execute(
        update(Lead)
        .where(col(Lead.id) == lead.id, col(Lead.state).in_(list(allowed_from)))
        .values(state=to)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        session.refresh(lead)
        return False
    session.refresh(lead)
    return True


def _waits_for_owner(member_id: int) -> Any:
    """A lead that waits for its owner: no verdict yet, or accepted with its follow-up
    (the attempts window) still running."""
    following_up = (
        select(Clock.id)
        .where(
            Clock.lead_id == Lead.id,
            Clock.kind == "attempts",
            col(Clock.closed_at).is_(None),
        )
        .exists()
    )
    return and_(
        col(Lead.owner_id) == member_id,
        or_(
            col(Lead.state) == "handed_off",
            and_(col(Lead.state) == "accepted", following_up),
        ),
    )


def open_leads_of(session: Session, *, member_id: int, limit: int | None = None) -> Sequence[Lead]:
    """The leads that wait for `member_id`: verdicts first, newest first."""
    query = (
        select(Lead)
        .where(_waits_for_owner(member_id))
        .order_by(col(Lead.state).desc(), col(Lead.handed_off_at).desc(), col(Lead.id).desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query).all()


def count_open_leads(session: Session, *, member_id: int) -> int:
    return session.exec(
        select(func.count()).select_from(Lead).where(_waits_for_owner(member_id))
    ).one()


def leads_in_state(session: Session, *, state: str) -> Sequence[Lead]:
    return session.exec(select(Lead).where(Lead.state == state).order_by(col(Lead.id))).all()


def routing_emails(session: Session, *, limit: int) -> list[str]:
    """Owner emails of leads still routing (their lookup failed), longest waiting first."""
    rows = session.exec(
        select(Lead.owner_email)
        .where(Lead.state == LeadState.routing.value, col(Lead.owner_email).is_not(None))
        .group_by(col(Lead.owner_email))
        .order_by(func.min(Lead.id))
        .limit(limit)
    ).all()
    return [row for row in rows if row]


def leads_by_id(session: Session, *, ids: Collection[int]) -> dict[int, Lead]:
    """The leads with these ids, by id, in one query (ids that match nothing are left out)."""
    if not ids:
        return {}
    rows = session.exec(select(Lead).where(col(Lead.id).in_(sorted(ids)))).all()
    return {row.id or 0: row for row in rows}
