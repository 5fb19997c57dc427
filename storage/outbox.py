"""Reads and repairs of the outbox for the people who run Liaison, and the sender's row
locks (leases renewed, messages given back) taken in one order."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam, case, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage import arrays
from storage.models import (
    CardLocation,
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
