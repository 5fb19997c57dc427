"""The outbox's rows: messages owed (one per key; card updates coalesced per place), the
sender's claims, leases, marks and give-backs (row locks always taken in id order), and the
reads and repairs for the people who run Liaison."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Insert, String, bindparam, case, cast, func, literal, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage import arrays
from storage.models import (
    CardLocation,
    Lead,
    Member,
    OutboxMessage,
    OutboxStatus,
)
from storage.sql import add_once
from storage.values import NewMessage


def recent_messages(
    session: Session, *, status: str | None = None, limit: int = 50
) -> Sequence[tuple[OutboxMessage, str | None]]:
    """The newest `limit` messages (of one status, if given), newest first, each with the
    name of the member it is for (None for a channel)."""
    query = (
        select(OutboxMessage, Member.name)
        .join(Member, col(Member.id) == col(OutboxMessage.member_id), isouter=True)
        .order_by(col(OutboxMessage.id).desc())
        .limit(limit)
    )
    if status:
        query = query.where(OutboxMessage.status == status)
    return session.exec(query).all()


def statuses(session: Session, *, ids: Collection[int]) -> dict[int, str]:
    """The status of each of these messages that exists."""
    query = select(OutboxMessage.id, OutboxMessage.status).where(col(OutboxMessage.id).in_(ids))
    return {message_id or 0: status for message_id, status in session.exec(query).all()}


def oldest_due(session: Session, *, now: datetime) -> datetime | None:
    """When the longest-waiting message that is due and not sent became due."""
    query = select(func.min(OutboxMessage.not_before)).where(
        col(OutboxMessage.status).in_(("pending", "sending")), col(OutboxMessage.not_before) <= now
    )
    found: datetime | None = session.exec(query).one()
    return found


def enqueue(session: Session, *, message: OutboxMessage) -> bool:
    """Add a message to the outbox; False when one with the same key is already there."""
    if session.exec(select(OutboxMessage.id).where(OutboxMessage.key == message.key)).first():
        return False
    return add_once(session, message)


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


# The sender's locks on outbox rows. Every transaction that may wait for an outbox row's
# lock takes all of them first, in id order (`lock_in_order`), and what must never wait
# (renewing leases, claiming) skips rows locked by others: so two transactions never wait
# for each other's rows, and a deadlock cannot happen.


def lock_in_order(session: Session, *, ids: Collection[int]) -> None:
    """Lock these outbox rows for the rest of the transaction, in id order (waiting for
    each in turn), so that transactions locking overlapping rows queue instead of
    deadlocking."""
    if ids and session.get_bind().dialect.name != "sqlite":  # SQLite: one writer at a time
        session.execute(
            select(col(OutboxMessage.id))
            .where(col(OutboxMessage.id).in_(sorted(ids)))
            .order_by(col(OutboxMessage.id))
            .with_for_update()
        ).all()


def _leased_by(owner: str) -> Any:
    return (col(OutboxMessage.status) == OutboxStatus.sending) & (
        col(OutboxMessage.claimed_by) == owner
    )


def renew_leases(
    session: Session, *, ids: Collection[int], owner: str, until: datetime
) -> tuple[set[int], set[int]]:
    """Renew `owner`'s leases on these messages until `until`, without ever waiting: rows
    are locked in id order, skipping those another transaction holds (their outcome is
    being recorded, or their lease was taken over). Returns the ids renewed, and those
    skipped that are still `owner`'s as last committed (to renew next time)."""
    renewed: set[int] = set()
    skipped: set[int] = set()
    wanted = sorted(ids)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        locked = list(
            session.execute(
                select(col(OutboxMessage.id))
                .where(col(OutboxMessage.id).in_(chunk), _leased_by(owner))
                .order_by(col(OutboxMessage.id))
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if locked:
            session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.id).in_(locked))
                .values(claimed_until=until)
                .execution_options(synchronize_session=False)
            )
        renewed.update(locked)
        rest = [id_ for id_ in chunk if id_ not in renewed]
        if rest:
            skipped.update(
                session.execute(
                    select(col(OutboxMessage.id)).where(
                        col(OutboxMessage.id).in_(rest), _leased_by(owner)
                    )
                ).scalars()
            )
    return renewed, skipped


def give_back(
    session: Session,
    *,
    owner: str,
    marks: Mapping[int, datetime | None],
    not_before: datetime,
) -> set[int]:
    """Put messages `owner` leased and did not send back in line from `not_before`, each
    with its `sending_since` as given (as it was before the claim); those no longer
    `owner`'s are left alone. Locks them in id order; returns the ids given back."""
    ours = set(
        session.execute(
            select(col(OutboxMessage.id))
            .where(col(OutboxMessage.id).in_(sorted(marks)), _leased_by(owner))
            .order_by(col(OutboxMessage.id))
            .with_for_update()
        ).scalars()
    )
    by_mark: dict[datetime | None, list[int]] = {}
    for id_ in sorted(ours):
        by_mark.setdefault(marks[id_], []).append(id_)
    for mark, same in by_mark.items():
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(same))
            .values(
                status=OutboxStatus.pending.value,
                claimed_until=None,
                not_before=not_before,
                sending_since=mark,
            )
            .execution_options(synchronize_session=False)
        )
    return ours


def note_error(session: Session, *, message_id: int, owner: str, error: str) -> None:
    """Say on a message `owner` still holds why it waits (a 429 its lane waits out), for
    `liaison outbox`; its lease and status stay as they are."""
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id, _leased_by(owner))
        .values(last_error=error[:500])
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------- the sender's claims and marks

LEASE = timedelta(seconds=60)
RETRY_FOR = timedelta(days=1)  # parked messages are tried again this long after being owed


def _claimable(now: datetime) -> Any:
    """Due and pending, or leased by a sender whose lease ran out."""
    return or_(
        (col(OutboxMessage.status) == OutboxStatus.pending)
        & (col(OutboxMessage.not_before) <= now),
        (col(OutboxMessage.status) == OutboxStatus.sending)
        & (col(OutboxMessage.claimed_until) < now),
    )


def due_count(session: Session, *, now: datetime) -> int:
    """How many messages a sender could claim at `now`."""
    return session.exec(
        select(func.count()).select_from(OutboxMessage).where(_claimable(now))
    ).one()


def held_by_count(session: Session, *, owner: str, now: datetime) -> int:
    """How many messages `owner` holds leased at `now` (being sent, or about to be)."""
    return session.exec(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            col(OutboxMessage.status) == OutboxStatus.sending,
            col(OutboxMessage.claimed_by) == owner,
            col(OutboxMessage.claimed_until) >= now,
        )
    ).one()


def _held(now: datetime) -> Any:
    return (col(OutboxMessage.status) == OutboxStatus.pending) & (
        col(OutboxMessage.not_before) > now
    )


def held_count(session: Session, *, now: datetime) -> int:
    """How many messages wait for their recipients' working hours (or a retry)."""
    return session.exec(select(func.count()).select_from(OutboxMessage).where(_held(now))).one()


def held_since(session: Session, *, now: datetime, after_id: int) -> list[OutboxMessage]:
    """Messages owed after `after_id` that wait beyond `now`, oldest first."""
    return list(
        session.exec(
            select(OutboxMessage)
            .where(_held(now), col(OutboxMessage.id) > after_id)
            .order_by(col(OutboxMessage.id))
        ).all()
    )


def _lane_key() -> Any:
    """`lane_of` in SQL: the conversation a row goes to."""
    location = col(OutboxMessage.location_id)
    member = col(OutboxMessage.member_id)
    return case(
        (location.is_not(None), literal("card:") + cast(location, String)),
        (member.is_not(None), literal("member:") + cast(member, String)),
        else_=literal("target:") + func.coalesce(col(OutboxMessage.target), ""),
    )


@dataclass
class Claimed:
    """A message this sender leased, with when an earlier send of it, whose outcome is not
    known, started (None: no earlier send may have posted it)."""

    message: OutboxMessage
    earlier: datetime | None
    member: Member | None = None  # the recipient, as read with the claim


def claim(
    session: Session,
    *,
    now: datetime,
    owner: str,
    limit: int,
    lease: timedelta = LEASE,
    busy: frozenset[str] = frozenset(),
    per_lane: int | None = None,
) -> list[Claimed]:
    """Due messages, and messages whose sender's lease ran out, leased to `owner` in one
    statement: none for the conversations in `busy` (this sender is already sending to
    them), at most `per_lane` per conversation, and the first of every conversation before
    the second of any, so one claim serves as many conversations as it can.

    The send is marked as started (`sending_since`) here, for all of them at once: a row
    that carries it may be on the platform, so if this sender dies before it records the
    outcome, the next one looks before it sends (the mark is put back on rows given back
    unsent, see `Sender._release`)."""
    members = [int(k.partition(":")[2]) for k in busy if k.startswith("member:")]
    targets = [k.partition(":")[2] for k in busy if k.startswith("target:")]
    cards = [int(k.partition(":")[2]) for k in busy if k.startswith("card:")]
    lane = _lane_key()
    rank = func.row_number().over(
        partition_by=lane, order_by=(col(OutboxMessage.not_before), col(OutboxMessage.id))
    )
    ranked: Any = select(
        col(OutboxMessage.id).label("id"),
        col(OutboxMessage.not_before).label("not_before"),
        rank.label("rank"),
    ).where(_claimable(now))
    if members:
        member = col(OutboxMessage.member_id)
        ranked = ranked.where(or_(member.is_(None), member.not_in(members)))
    if targets:
        target = col(OutboxMessage.target)
        ranked = ranked.where(or_(target.is_(None), target.not_in(targets)))
    if cards:
        location = col(OutboxMessage.location_id)
        ranked = ranked.where(or_(location.is_(None), location.not_in(cards)))
    inner = ranked.subquery()
    picked = select(inner.c.id)
    if per_lane is not None:
        picked = picked.where(inner.c.rank <= per_lane)
    ids = list(
        session.execute(
            picked.order_by(inner.c.rank, inner.c.not_before, inner.c.id).limit(limit)
        ).scalars()
    )
    if not ids:
        return []
    # Locked and checked again: another sender may have taken some meanwhile.
    rows = session.exec(
        select(OutboxMessage)
        .where(col(OutboxMessage.id).in_(ids), _claimable(now))
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    taken = [Claimed(row, row.sending_since) for row in rows]
    until = now + lease
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_([row.id for row in rows]))
        .values(
            status=OutboxStatus.sending.value,
            claimed_by=owner,
            claimed_until=until,
            sending_since=func.coalesce(col(OutboxMessage.sending_since), now),
        )
        .execution_options(synchronize_session=False)
    )
    for row in rows:
        session.expunge(row)
        row.status, row.claimed_by, row.claimed_until = OutboxStatus.sending.value, owner, until
        row.sending_since = row.sending_since or now
    order = {id_: n for n, id_ in enumerate(ids)}
    return sorted(taken, key=lambda c: order[c.message.id])


def _mark_sent() -> Any:
    """The one statement that marks a message sent (built once: lanes mark many a second);
    a newer state of a card owed while it was in flight makes it pending again, to send
    again. Its `parked_at` comes back (a message delivered after being parked)."""
    table: Any = OutboxMessage.__table__  # type: ignore[attr-defined]
    newer = table.c.revision != bindparam("revision_sent")
    now = bindparam("now", type_=table.c.sent_at.type)
    return (
        update(table)
        .where(table.c.id == bindparam("the_id"))
        .values(
            status=case((newer, OutboxStatus.pending.value), else_=OutboxStatus.sent.value),
            not_before=case((newer, now), else_=table.c.not_before),
            sent_at=now,
            claimed_until=None,
            platform=bindparam("the_platform"),
            message_id=bindparam("the_message_id"),
            sending_since=None,
        )
        .returning(table.c.parked_at, table.c.status)
    )


MARK_SENT = _mark_sent()


def _revivable(now: datetime, *, all_parked: bool) -> Any:
    """Parked by platform failures, owed less than RETRY_FOR ago, and (unless the platform
    answers again) past its backoff."""
    condition = (
        (col(OutboxMessage.status) == OutboxStatus.failed)
        & col(OutboxMessage.parked_at).is_not(None)
        & (col(OutboxMessage.created_at) > now - RETRY_FOR)
    )
    if not all_parked:
        condition = condition & (col(OutboxMessage.not_before) <= now)
    return condition


def revivable_count(session: Session, *, now: datetime) -> int:
    """How many parked messages could go back in line (now, or once a platform answers)."""
    return session.exec(
        select(func.count()).select_from(OutboxMessage).where(_revivable(now, all_parked=True))
    ).one()


def revive(session: Session, *, now: datetime, all_parked: bool) -> int:
    """Put parked messages back in line: all of them when a platform answers again, else
    those whose backoff has passed. Each gets one attempt; failing, it is parked again."""
    rows = session.exec(
        select(OutboxMessage)
        .where(_revivable(now, all_parked=all_parked))
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status, row.not_before = OutboxStatus.pending.value, now
    return len(rows)


def depth(session: Session) -> dict[str, int]:
    """Messages not yet sent, by status (for the outbox-depth gauge)."""
    found = session.exec(
        select(OutboxMessage.status, func.count())
        .where(col(OutboxMessage.status) != OutboxStatus.sent)
        .group_by(col(OutboxMessage.status))
    ).all()
    return {str(status): int(count) for status, count in found}


def retry(session: Session, *, ids: list[int] | None, now: datetime) -> int:
    """Put failed messages (all, or these ids) back in line; returns how many."""
    query = select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.failed)
    if ids:
        query = query.where(col(OutboxMessage.id).in_(ids))
    rows = session.exec(query).all()
    for row in rows:
        row.status, row.attempts, row.not_before = OutboxStatus.pending.value, 0, now
    return len(rows)


def mark_sent(
    session: Session,
    *,
    message_id: int,
    revision: int,
    now: datetime,
    platform: str,
    platform_message_id: str,
) -> tuple[datetime | None, str] | None:
    """Mark a message sent (`MARK_SENT`) at `revision`: its `parked_at` and new status, or
    None when the row is gone."""
    found = session.execute(
        MARK_SENT,
        {
            "the_id": message_id,
            "revision_sent": revision,
            "now": now,
            "the_platform": platform,
            "the_message_id": platform_message_id,
        },
    ).first()
    return (found[0], found[1]) if found is not None else None


def leads_and_owners(session: Session, *, lead_ids: Collection[int]) -> list[Any]:
    """These leads and their owners, in two queries (the sender reads them ahead of drawing
    a batch's cards, which then find them in the session)."""
    leads = session.exec(select(Lead).where(col(Lead.id).in_(lead_ids))).all()
    owners = {lead.owner_id for lead in leads if lead.owner_id is not None}
    members = session.exec(select(Member).where(col(Member.id).in_(owners))).all() if owners else []
    return [*leads, *members]
