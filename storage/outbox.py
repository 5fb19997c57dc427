"""Reads and repairs of the outbox for the people who run Liaison, and the sender's row
locks (leases renewed, messages given back) taken in one order."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from storage.models import Member, OutboxMessage, OutboxStatus


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
