"""The sender's row locks on PostgreSQL: two of its transactions at once never deadlock.

A bookkeeping batch (mark one message sent, give another lane's messages back) and the
lease renewal of every message the sender holds run at the same time in two sessions,
interleaved the way a 429 storm interleaves them: the batch has locked one row when the
renewal starts, and wants a row the renewal reached first. Rows are locked in id order and
the renewal skips rows others hold, so neither waits for the other's rows.

Needs PostgreSQL (the pg_url fixture skips with the reason, or fails under
LIAISON_REQUIRE_PG=1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import text
from sqlmodel import select

from bot.core.delivery import Deliverer, Posted
from bot.outbox.sender import Bookkeeping, Sender
from storage.db import Store
from storage.models import OutboxMessage
from storage.outbox import Claimed, claim
from tests.test_outbox_pace import write_to_outbox

NOW = datetime.now(UTC)


def lease_all(store: Store, owner: str) -> list[Claimed]:
    with store.session() as session:
        claimed = claim(session, now=NOW, owner=owner, limit=100)
    return sorted(claimed, key=lambda c: c.message.id or 0)


def waiting_for_a_lock(store: Store) -> bool:
    """Whether some session of this database waits for a lock (another connection looks)."""
    with store.engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(found)


def until_blocked_or_done(store: Store, renewal: threading.Thread) -> None:
    """Give the renewal time to reach the row the batch holds (and wait for it, if it
    waits for locks at all)."""
    deadline = time.monotonic() + 3.0
    while renewal.is_alive() and time.monotonic() < deadline:
        if waiting_for_a_lock(store):
            return
        time.sleep(0.02)


def test_lease_renewal_and_a_bookkeeping_batch_never_deadlock(pg_store: Store) -> None:
    write_to_outbox(pg_store, reps=2, each=1, at=NOW)
    sender = Sender(pg_store, Deliverer(pg_store, [], []), "a")
    first, second = lease_all(pg_store, "a")  # ids in order: first < second
    ids = [first.message.id or 0, second.message.id or 0]
    for c in (first, second):
        sender.held[c.message.id or 0] = NOW + sender.lease

    renewed: list[Any] = []
    errors: list[BaseException] = []

    def renew() -> None:
        try:
            renewed.append(sender._renew_rows(ids, NOW))
        except BaseException as error:
            errors.append(error)

    renewal = threading.Thread(target=renew)

    def start_renewal() -> None:
        renewal.start()
        until_blocked_or_done(pg_store, renewal)

    books = Bookkeeping(pg_store, run=None, local=sender._batch)  # type: ignore[arg-type]
    where = ("slack", Posted("D0R001", "1.0"))
    works: list[tuple[Callable[[], Any], list[int]]] = [
        (partial(sender._sent, second.message, where, NOW), [ids[1]]),
        (start_renewal, []),
        (partial(sender._release, [first], NOW + timedelta(seconds=1)), [ids[0]]),
    ]
    outcomes = books._all(works)
    renewal.join(timeout=30)

    assert not renewal.is_alive()
    assert errors == [], f"the lease renewal failed: {errors}"
    assert [ok for ok, _ in outcomes] == [True, True, True]
    assert books.transactions == 1  # one batch, not rolled back and redone piece by piece
    with pg_store.session() as session:
        rows = {m.id: m for m in session.exec(select(OutboxMessage)).all()}
    assert rows[ids[0]].status == "pending" and rows[ids[0]].claimed_by == "a"
    assert rows[ids[1]].status == "sent"
