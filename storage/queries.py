"""Reads and writes. Keyword-only, session first; aggregates are SQL, not Python loops."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, and_, bindparam, case, func, insert, or_, tuple_, update
from sqlalchemy import select as sa_select
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from storage import arrays
from storage.models import (
    Away,
    Campaign,
    CardLocation,
    ChannelSetting,
    Clock,
    ClockChange,
    CompanySetting,
    Criterion,
    EventKind,
    Holiday,
    Lead,
    LeadDefinition,
    LeadEvent,
    LeadRejection,
    LeadState,
    Member,
    OutboxMessage,
    OutboxStatus,
    ProcessedRequest,
    Role,
    SlaPolicy,
    ToneRule,
)
from storage.values import NewEvent, NewLead, NewMessage, StoredLead

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- requests


def _add_once(session: Session, row: Any) -> bool:
    """Insert `row` in a savepoint; False when a unique constraint says it already exists
    (a concurrent writer got there first). Callers check for the row beforehand, cheaply."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


def claim_request(session: Session, *, platform: str, request_id: str, now: datetime) -> bool:
    """Record a platform request id; False when it was already recorded."""
    if session.get(ProcessedRequest, (platform, request_id)) is not None:
        return False
    return _add_once(session, ProcessedRequest(platform=platform, request_id=request_id, at=now))


# ---------------------------------------------------------------- members


def get_member(session: Session, *, member_id: int) -> Member | None:
    return session.get(Member, member_id)


def members_by_id(session: Session, *, ids: Collection[int]) -> dict[int, Member]:
    """The members with these ids, by id, in one query (ids that match nobody are left out)."""
    if not ids:
        return {}
    rows = session.exec(select(Member).where(col(Member.id).in_(sorted(ids)))).all()
    return {row.id or 0: row for row in rows}


def member_by(session: Session, **where: str) -> Member | None:
    """The member whose column equals the value, e.g. `member_by(s, email="a@x.com")`."""
    ((column, value),) = where.items()
    if column == "email":
        value = value.strip().lower()
    return session.exec(select(Member).where(getattr(Member, column) == value)).first()


def members_with_role(session: Session, *, role: str) -> Sequence[Member]:
    return session.exec(select(Member).where(Member.role == role).order_by(col(Member.id))).all()


def admin_ids(session: Session) -> list[int]:
    """The members who administer Liaison, oldest first."""
    query = select(Member.id).where(Member.role == Role.admin.value).order_by(col(Member.id))
    return [member_id for member_id in session.exec(query).all() if member_id is not None]


def all_members(session: Session) -> Sequence[Member]:
    return session.exec(select(Member).order_by(col(Member.name))).all()


def _unique_handle(session: Session, base: str, spread: int = 0) -> str:
    """`base` made a handle nobody has: its letters and digits, then a number if taken.
    With `spread`, one of the first `spread + 1` free ones, at random, so writers racing
    for the same name (a batch of new owners) stop picking the same one."""
    stem = re.sub(r"[^a-z0-9]+", "", base.lower()) or "member"
    taken = set(
        session.exec(select(Member.handle).where(col(Member.handle).startswith(stem))).all()
    )
    free: list[str] = []
    n = 1
    while len(free) <= spread:
        handle = stem if n == 1 else f"{stem}{n}"
        if handle not in taken:
            free.append(handle)
        n += 1
    return random.choice(free)


HANDLE_TRIES = 50


@cache
def _insert_ignoring_conflicts(dialect: str, table: Any) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id` on `table`, built once per dialect:
    a row a concurrent writer already made (any unique column) is left alone, and no id
    comes back, so the caller reads the row that won instead."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(table.c.id)


def _insert_or_none(session: Session, table: Any, values: dict[str, Any]) -> int | None:
    """Insert one row unless a unique column already holds its value; its id, or None."""
    connection = session.connection()
    statement = _insert_ignoring_conflicts(connection.dialect.name, table)
    new_id: int | None = connection.execute(statement, values).scalar()
    return new_id


def _create_member(
    session: Session,
    *,
    now: datetime,
    name: str,
    email: str | None,
    slack_user_id: str | None,
    teams_user_id: str | None,
) -> Member:
    """A new member, or the one a concurrent writer created a moment ago with the same
    email or platform id: a race is a lookup, never an IntegrityError. A handle taken in
    the meantime is retried with the next free one."""
    table = Member.__table__  # type: ignore[attr-defined]
    session.flush()
    for attempt in range(HANDLE_TRIES):
        values = {
            "name": name,
            "handle": _unique_handle(session, name.split()[0], spread=4 * attempt),
            "email": email,
            "slack_user_id": slack_user_id,
            "teams_user_id": teams_user_id,
            "role": Role.rep.value,
            "weekly_digest": False,
            "created_at": now,
        }
        new_id = _insert_or_none(session, table, values)
        if new_id is not None:
            member = session.get(Member, new_id)
            assert member is not None
            return member
        for column, value in (
            ("slack_user_id", slack_user_id),
            ("teams_user_id", teams_user_id),
            ("email", email),
        ):
            found = member_by(session, **{column: value}) if value else None
            if found is not None:
                return found
    raise RuntimeError(f"no free handle for member {name!r} after {HANDLE_TRIES} tries")


def _bound_elsewhere(member: Member, ids: dict[str, str | None]) -> bool:
    """`member` already has a different platform id than one of `ids`: whoever now claims
    their email is someone else, and is never bound to them (logged, without the email)."""
    for column, value in ids.items():
        bound = getattr(member, column)
        if value and bound and bound != value:
            log.warning(
                "member %s already has a %s; a different account claimed their email "
                "and was not bound to them",
                member.id,
                column,
            )
            return True
    return False


def upsert_member(
    session: Session,
    *,
    now: datetime,
    email: str | None = None,
    name: str | None = None,
    slack_user_id: str | None = None,
    teams_user_id: str | None = None,
    **fields: Any,
) -> Member:
    """Find a member by any platform id or email and update it, or create one.

    A member found by email who already has a different Slack or Teams id is never
    rebound: the account claiming the email is kept apart from them, without the email.
    An existing member's name changes only with `rename=True`.
    """
    rename = bool(fields.pop("rename", False))
    email = email.strip().lower() if email else None
    ids = {"slack_user_id": slack_user_id, "teams_user_id": teams_user_id}
    member = None
    for column, value in ids.items():
        if value and member is None:
            member = member_by(session, **{column: value})
    if email and (owner := member_by(session, email=email)) not in (None, member):
        if member is None and not _bound_elsewhere(owner, ids):
            member = owner
        else:  # the email is someone else's: the newcomer stays unbound from it
            email = None
    if member is None:
        display = name or (email.split("@")[0] if email else None) or "member"
        member = _create_member(
            session,
            now=now,
            name=display,
            email=email,
            slack_user_id=slack_user_id,
            teams_user_id=teams_user_id,
        )
    if email and not member.email:
        member.email = email
    if name and rename:
        member.name = name
    if slack_user_id:
        member.slack_user_id = slack_user_id
    if teams_user_id:
        member.teams_user_id = teams_user_id
    for key, value in fields.items():
        if value is not None:
            setattr(member, key, value)
    session.add(member)
    session.flush()
    return member


def set_teams_reference(
    session: Session, *, member: Member, reference: dict[str, Any] | None
) -> None:
    """Keep the Teams conversation reference the member's private messages go to (None:
    forget it, the bot was removed from their chat)."""
    member.teams_reference = reference
    session.add(member)


# ---------------------------------------------------------------- lead definition


def current_definition(session: Session) -> tuple[LeadDefinition, list[Criterion]]:
    definition = session.exec(
        select(LeadDefinition).order_by(col(LeadDefinition.version).desc())
    ).first()
    if definition is None:
        raise LookupError("no lead definition: run `liaison db upgrade`")
    return definition, criteria_of(session, definition_id=definition.id or 0)


def definition_in_force(session: Session) -> tuple[int, int]:
    """The id and version of the lead definition in force (its criteria not read)."""
    table = LeadDefinition.__table__  # type: ignore[attr-defined]
    row = (
        session.connection()
        .execute(sa_select(table.c.id, table.c.version).order_by(table.c.version.desc()).limit(1))
        .first()
    )
    if row is None:
        raise LookupError("no lead definition: run `liaison db upgrade`")
    return int(row[0]), int(row[1])


def criteria_of(session: Session, *, definition_id: int) -> list[Criterion]:
    return list(
        session.exec(
            select(Criterion)
            .where(Criterion.definition_id == definition_id)
            .order_by(col(Criterion.position))
        ).all()
    )


def criterion_keys(session: Session) -> set[str]:
    """Every key a criterion has had, in any version of the lead definition."""
    return set(session.exec(select(Criterion.key).distinct()).all())


def create_definition(
    session: Session,
    *,
    criteria: Sequence[tuple[str, str]],
    note: str,
    created_by: str,
    now: datetime,
) -> LeadDefinition:
    """A new version of the lead definition; the newest version is the one in force."""
    latest = session.exec(select(func.max(LeadDefinition.version))).one() or 0
    definition = LeadDefinition(
        version=latest + 1, note=note, created_by=created_by, created_at=now
    )
    session.add(definition)
    session.flush()
    for position, (key, text) in enumerate(criteria):
        session.add(
            Criterion(definition_id=definition.id or 0, key=key, text=text, position=position)
        )
    session.flush()
    return definition


# ---------------------------------------------------------------- campaigns


def ensure_campaign(session: Session, *, name: str) -> Campaign:
    """The campaign of this name, created if nobody has (concurrent callers get one row)."""
    campaign = session.exec(select(Campaign).where(Campaign.name == name)).first()
    if campaign is None:
        table = Campaign.__table__  # type: ignore[attr-defined]
        new_id = _insert_or_none(session, table, {"name": name})
        if new_id is not None:
            campaign = session.get(Campaign, new_id)
        else:
            campaign = session.exec(select(Campaign).where(Campaign.name == name)).first()
        assert campaign is not None, f"campaign {name!r} neither inserted nor found"
    return campaign


def all_campaigns(session: Session) -> Sequence[Campaign]:
    return session.exec(select(Campaign).order_by(col(Campaign.name))).all()


# ---------------------------------------------------------------- leads


def find_lead(session: Session, *, source: str, external_id: str) -> Lead | None:
    return session.exec(
        select(Lead).where(Lead.source == source, Lead.external_id == external_id)
    ).first()


# Rows named in one IN list at most: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 2000


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> list[Sequence[Any]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def members_by_email(session: Session, *, emails: Collection[str]) -> dict[str, Member]:
    """The members with these (lower-case) emails, by email, in one query per chunk."""
    found: dict[str, Member] = {}
    for chunk in _chunks(sorted(emails)):
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
    for chunk in _chunks(missing):
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
    for chunk in _chunks(sorted(emails)):
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
    for chunk in _chunks(sorted(lead_ids)):
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


# ---------------------------------------------------------------- card locations


def record_location(session: Session, *, location: CardLocation) -> None:
    session.add(location)
    session.flush()


def record_location_once(session: Session, *, location: CardLocation) -> bool:
    """Record where a card was posted unless that message is recorded already (one
    statement: the outbox records many at once); whether it was new."""
    values = location.model_dump(exclude={"id"})
    table = CardLocation.__table__  # type: ignore[attr-defined]
    return _insert_or_none(session, table, values) is not None


def record_card_place(
    session: Session,
    *,
    lead_id: int,
    purpose: str,
    member_id: int | None,
    platform: str,
    channel: str,
    message_id: str,
    reference: dict[str, Any] | None,
    at: datetime,
) -> bool:
    """`record_location_once` from the place's parts."""
    location = CardLocation(
        lead_id=lead_id,
        purpose=purpose,
        member_id=member_id,
        platform=platform,
        channel=channel,
        message_id=message_id,
        reference=reference,
        created_at=at,
    )
    return record_location_once(session, location=location)


def locations_of(session: Session, *, lead_id: int, purpose: str) -> Sequence[CardLocation]:
    return session.exec(
        select(CardLocation)
        .where(CardLocation.lead_id == lead_id, CardLocation.purpose == purpose)
        .order_by(col(CardLocation.id))
    ).all()


def location_by_message(
    session: Session, *, platform: str, channel: str, message_id: str
) -> CardLocation | None:
    return session.exec(
        select(CardLocation).where(
            CardLocation.platform == platform,
            CardLocation.channel == channel,
            CardLocation.message_id == message_id,
        )
    ).first()


# ---------------------------------------------------------------- channels


def channel_target(session: Session, *, kind: str) -> str | None:
    setting = session.get(ChannelSetting, kind)
    return setting.target if setting else None


def set_channel(session: Session, *, kind: str, target: str) -> None:
    setting = session.get(ChannelSetting, kind) or ChannelSetting(kind=kind, target=target)
    setting.target = target
    session.add(setting)


def get_setting(session: Session, *, key: str) -> str | None:
    setting = session.get(CompanySetting, key)
    return setting.value if setting else None


def set_setting(session: Session, *, key: str, value: str) -> None:
    setting = session.get(CompanySetting, key) or CompanySetting(key=key, value=value)
    setting.value = value
    session.add(setting)


# ---------------------------------------------------------------- SLA and business time


def current_policy(session: Session) -> SlaPolicy:
    policy = session.exec(select(SlaPolicy).order_by(col(SlaPolicy.version).desc())).first()
    if policy is None:
        raise LookupError("no SLA policy: run `liaison db upgrade`")
    return policy


def create_policy(
    session: Session, *, fields: dict[str, Any], note: str, created_by: str, now: datetime
) -> SlaPolicy:
    """A new SLA version; fields not given keep the values of the version in force."""
    base = current_policy(session).model_dump(
        exclude={"id", "version", "note", "created_by", "created_at"}
    )
    latest = session.exec(select(func.max(SlaPolicy.version))).one() or 0
    policy = SlaPolicy(
        **{**base, **fields}, version=latest + 1, note=note, created_by=created_by, created_at=now
    )
    session.add(policy)
    session.flush()
    return policy


def holidays(session: Session) -> list[date]:
    return [h.day for h in session.exec(select(Holiday).order_by(col(Holiday.day))).all()]


def add_holiday(session: Session, *, day: date, name: str) -> None:
    holiday = session.get(Holiday, day) or Holiday(day=day, name=name)
    holiday.name = name
    session.add(holiday)


def away_spans(session: Session, *, member_id: int) -> list[tuple[datetime, datetime]]:
    return away_spans_of(session, member_ids=[member_id])[member_id]


def away_spans_of(
    session: Session, *, member_ids: Collection[int]
) -> dict[int, list[tuple[datetime, datetime]]]:
    """Each member's time away (an empty list for none), earliest first, in one query."""
    spans: dict[int, list[tuple[datetime, datetime]]] = {m: [] for m in member_ids}
    if not spans:
        return spans
    rows = session.exec(
        select(Away)
        .where(col(Away.member_id).in_(sorted(spans)))
        .order_by(col(Away.member_id), col(Away.starts_at), col(Away.id))
    ).all()
    for row in rows:
        if row.until > row.starts_at:
            spans[row.member_id].append((row.starts_at, row.until))
    return spans


def current_away(session: Session, *, member_id: int, now: datetime) -> Away | None:
    return session.exec(
        select(Away).where(Away.member_id == member_id, Away.starts_at <= now, Away.until > now)
    ).first()


def set_away(session: Session, *, member_id: int, until: datetime, now: datetime) -> Away:
    """Away from now until `until`; replaces a current time away rather than stacking."""
    away = current_away(session, member_id=member_id, now=now) or Away(
        member_id=member_id, starts_at=now, until=until, created_at=now
    )
    away.until = until
    session.add(away)
    session.flush()
    return away


def end_away(session: Session, *, member_id: int, now: datetime) -> bool:
    away = current_away(session, member_id=member_id, now=now)
    if away is None:
        return False
    away.until = now
    session.add(away)
    return True


# ---------------------------------------------------------------- SLA clocks


def start_clock(session: Session, *, clock: Clock) -> Clock | None:
    """Store a new clock; None when this (lead, kind, ref) clock already exists."""
    existing = session.exec(
        select(Clock).where(
            Clock.lead_id == clock.lead_id, Clock.kind == clock.kind, Clock.ref == clock.ref
        )
    ).first()
    if existing is not None or not _add_once(session, clock):
        return None
    return clock


def open_clocks(
    session: Session,
    *,
    lead_id: int,
    kinds: Sequence[str],
    ref: str | None = None,
    lock: bool = True,
) -> list[Clock]:
    """The lead's open clocks of these kinds (locked for update unless `lock=False`)."""
    query = select(Clock).where(
        Clock.lead_id == lead_id, col(Clock.kind).in_(list(kinds)), col(Clock.closed_at).is_(None)
    )
    if ref is not None:
        query = query.where(Clock.ref == ref)
    if lock:
        query = query.with_for_update()
    return list(session.exec(query.order_by(col(Clock.id))).all())


def open_clocks_of(session: Session, *, owner_id: int, kind: str) -> list[Clock]:
    """A member's open clocks of one kind, oldest first (what waits for them)."""
    return list(
        session.exec(
            select(Clock)
            .where(Clock.owner_id == owner_id, Clock.kind == kind, col(Clock.closed_at).is_(None))
            .order_by(col(Clock.started_at))
        ).all()
    )


@cache
def _due_clocks_query(limit: int) -> SelectOfScalar[Clock]:
    """Built once per limit, with `now` as a parameter: a statement object keeps its cache
    key, so an empty tick does not pay for building and keying the query every time."""
    return (
        select(Clock)
        .where(col(Clock.next_at) <= bindparam("now"), col(Clock.closed_at).is_(None))
        .order_by(col(Clock.next_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


_ANY_DUE = (
    sa_select(Clock.__table__.c.id)  # type: ignore[attr-defined]
    .where(Clock.__table__.c.next_at <= bindparam("now"))  # type: ignore[attr-defined]
    .where(Clock.__table__.c.closed_at.is_(None))  # type: ignore[attr-defined]
    .limit(1)
)


def any_due_clock(session: Session, *, now: datetime) -> bool:
    """Whether any clock is due, as one plain indexed query: most ticks find nothing, and
    then need neither the ORM nor row locks."""
    return session.connection().execute(_ANY_DUE, {"now": now}).first() is not None


def due_clocks(session: Session, *, now: datetime, limit: int) -> list[Clock]:
    """Open clocks whose next step is due, locked for this transaction.

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several instances tick at once, each
    taking different rows; a crashed instance's locks vanish with its transaction.
    """
    return list(session.exec(_due_clocks_query(limit), params={"now": now}).all())


_CLOCK_TABLE = Clock.__table__  # type: ignore[attr-defined]
_UPDATE_CLOCKS = update(_CLOCK_TABLE).where(_CLOCK_TABLE.c.id == bindparam("clock_id"))


def update_clocks(session: Session, *, changes: Sequence[ClockChange]) -> None:
    """Write where a tick leaves its clocks (locked by `due_clocks`): one executemany UPDATE,
    whatever each change is. The Clock objects in the session are not updated."""
    if not changes:
        return
    session.connection().execute(
        _UPDATE_CLOCKS,
        [
            {
                "clock_id": change.clock_id,
                "stage": change.stage,
                "next_at": change.next_at,
                "closed_at": change.closed_at,
                "outcome": change.outcome,
                "business_seconds": change.business_seconds,
            }
            for change in changes
        ],
    )


# ---------------------------------------------------------------- outbox


def enqueue(session: Session, *, message: OutboxMessage) -> bool:
    """Add a message to the outbox; False when one with the same key is already there."""
    if session.exec(select(OutboxMessage.id).where(OutboxMessage.key == message.key)).first():
        return False
    return _add_once(session, message)


def owe_post(
    session: Session,
    *,
    key: str,
    target: str,
    card: dict[str, Any],
    now: datetime,
    request_id: str | None,
) -> bool:
    """Owe a channel post (due now); False when one with the same key is owed already."""
    message = OutboxMessage(
        key=key, target=target, card=card, not_before=now, created_at=now, request_id=request_id
    )
    return enqueue(session, message=message)


def update_key(location_id: int) -> str:
    """The one outbox row that updates the card at a location in place."""
    return f"update:{location_id}"


@cache
def _owe_update_statement(dialect: str) -> Insert:
    """`INSERT … ON CONFLICT (key) DO UPDATE`: a newer state of a card is coalesced into
    the row already owed for its location. Waiting, it stays as it is (it is rendered
    when sent, so the newer state is what goes); sent or parked, it is due again now; in
    flight, `revision` tells the sender to send once more when this send is done."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    in_line = table.c.status.in_([OutboxStatus.pending.value, OutboxStatus.sending.value])
    return insert.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "card": insert.excluded.card,
            "revision": table.c.revision + 1,
            "status": case((in_line, table.c.status), else_=OutboxStatus.pending.value),
            "not_before": case((in_line, table.c.not_before), else_=insert.excluded.not_before),
            "attempts": case((in_line, table.c.attempts), else_=0),
            "last_error": case((in_line, table.c.last_error), else_=None),
        },
    ).returning(table.c.id, table.c.revision)


def owe_update(
    session: Session, *, location: CardLocation, card: dict[str, Any], render: str, now: datetime
) -> tuple[int, int]:
    """Owe an update of the card at `location` (coalesced with one already owed there);
    the row's id and revision (the number of the state just owed)."""
    session.flush()
    connection = session.connection()
    values = {
        "key": update_key(location.id or 0),
        "card": card,
        "lead_id": location.lead_id,
        "purpose": location.purpose,
        "location_id": location.id,
        "render": render,
        "status": OutboxStatus.pending.value,
        "not_before": now,
        "attempts": 0,
        "revision": 0,
        "created_at": now,
    }
    row = connection.execute(_owe_update_statement(connection.dialect.name), values).one()
    return int(row[0]), int(row[1])


def lease_update(
    session: Session, *, message_id: int, owner: str, until: datetime, now: datetime
) -> bool:
    """Lease an owed card update to `owner` if it is waiting and due (not in flight with
    another sender, not held back by a retry's backoff), marking its send as started, as a
    sender's claim does; whether it was leased."""
    result = session.connection().execute(
        _LEASE_UPDATE, {"the_id": message_id, "owner": owner, "until": until, "now": now}
    )
    return bool(result.rowcount == 1)


def _lease_update() -> Any:
    """`lease_update`'s statement, built once (a click leases its card's update each time)."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    now = bindparam("now", type_=table.c.sending_since.type)
    return (
        update(table)
        .where(
            table.c.id == bindparam("the_id"),
            table.c.status == OutboxStatus.pending.value,
            table.c.not_before <= now,
        )
        .values(
            status=OutboxStatus.sending.value,
            claimed_by=bindparam("owner"),
            claimed_until=bindparam("until", type_=table.c.claimed_until.type),
            sending_since=now,
        )
    )


_LEASE_UPDATE = _lease_update()


@cache
def _enqueue_many_statement(dialect: str) -> Insert:
    """`INSERT … ON CONFLICT (key) DO NOTHING RETURNING key`, built once per dialect.

    RETURNING needs SQLite 3.35 or newer."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[table.c.key]).returning(table.c.key)


def enqueue_many(session: Session, *, messages: Sequence[NewMessage]) -> list[str]:
    """Owe these messages (pending outbox rows) with one multi-row INSERT; the keys actually
    written, in the order given. A key already in the outbox, or given twice, is written
    once, never again, as `enqueue` would.

    Pending ORM changes are flushed first, so the rows may refer to them."""
    rows: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message.key not in rows:
            rows[message.key] = {
                "key": message.key,
                "member_id": message.member_id,
                "target": message.target,
                "card": message.card,
                "lead_id": message.lead_id,
                "purpose": message.purpose,
                "render": message.render,
                "in_thread": message.in_thread,
                "status": OutboxStatus.pending.value,
                "not_before": message.not_before,
                "attempts": 0,
                "created_at": message.created_at,
                "request_id": message.request_id,
            }
    if not rows:
        return []
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns = (*next(iter(rows.values())), "revision")
        found = arrays.insert_rows(
            session,
            table=OutboxMessage.__table__,  # type: ignore[attr-defined]
            columns=columns,
            rows=[(*row.values(), 0) for row in rows.values()],
            conflict=("key",),
            returning=("key",),
        )
        written = {key for (key,) in found}
    else:
        result = connection.execute(
            _enqueue_many_statement(connection.dialect.name), list(rows.values())
        )
        written = set(result.scalars().all())
    return [key for key in rows if key in written]


def mark_history_delivered(
    session: Session, *, now: datetime, keys: Collection[str] | None = None
) -> int:
    """Demo data only: pending messages of an invented past (those with these keys, or all)
    count as delivered."""
    query = select(OutboxMessage).where(OutboxMessage.status == "pending")
    if keys is not None:
        if not keys:
            return 0
        query = query.where(col(OutboxMessage.key).in_(sorted(keys)))
    rows = session.exec(query).all()
    for row in rows:
        row.status, row.sent_at, row.platform = "sent", now, "demo-history"
        session.add(row)
    return len(rows)


# ---------------------------------------------------------------- tone rules


def tone_rules(session: Session) -> Sequence[ToneRule]:
    """Longest phrases first, so the most specific match is the one named."""
    rules = session.exec(select(ToneRule)).all()
    return sorted(rules, key=lambda r: (-len(r.phrase), r.phrase))


def add_tone_rule(
    session: Session, *, phrase: str, kind: str, suggestion: str, created_by: str, now: datetime
) -> ToneRule:
    """Add a phrase, or update the kind and suggestion of a phrase already listed."""
    same = func.lower(ToneRule.phrase) == phrase.lower()
    rule = session.exec(select(ToneRule).where(same)).first()
    if rule is None:
        rule = ToneRule(phrase=phrase, created_at=now)
    rule.kind, rule.suggestion, rule.created_by = kind, suggestion, created_by
    session.add(rule)
    session.flush()
    return rule


def remove_tone_rule(session: Session, *, phrase: str) -> bool:
    rule = session.exec(
        select(ToneRule).where(func.lower(ToneRule.phrase) == " ".join(phrase.split()).lower())
    ).first()
    if rule is None:
        return False
    session.delete(rule)
    return True
