"""A click's card update goes out from the click's own task (issue 11): leased to this
process's outbox sender in the handler's transaction and sent at once, with the outbox row
as the fallback. A newer state owed while it is in flight still follows it, and a lease
nobody used runs out and the sender delivers the card. Signed requests into the real Bolt
app over HTTP, and the real Slack messenger against the Web API stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.core.effects import Owed, UpdateCards
from bot.core.interaction import Interaction, Kind, Where
from bot.core.owing import UpdateLease
from bot.outbox.click_updates import ClickUpdates
from bot.outbox.sender import Sender
from bot.web.server import SCHEDULER
from handlers.ingest import Ingestor, LeadIn
from storage.db import Store
from storage.models import OutboxMessage
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, slack_settings, slack_with
from tests.test_render_at_send import ALWAYS, buttons_of, slack_bot, updates
from tests.test_slack import interact, lead_payload, posted_cards, press, send_leads, text_of


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await slack_with("alice", "carol")
    yield standin
    await standin.stop()


@pytest.fixture
async def server(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = slack_settings(f"sqlite:///{tmp_path / 'liaison.db'}", slack)
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


def update_rows(store: Store) -> list[OutboxMessage]:
    with store.session() as session:
        return list(
            session.exec(select(OutboxMessage).where(OutboxMessage.location_id != None)).all()  # noqa: E711
        )


async def test_an_accept_updates_its_card_without_the_outbox_loop(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await send_leads(server, lead_payload("C-1", "Jordan Patel"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    await server.settle()
    # The outbox loop is stopped: only the click's own task can update the card now.
    server.app[SCHEDULER].stop()
    await interact(server, press(slack, "U0ALICE", card, "lead.accept"))

    (update,) = updates(slack, card)
    assert "Accepted by Alice Adams" in text_of(update)
    assert "Accept" not in buttons_of(update)
    (row,) = update_rows(server.store)
    assert (row.status, row.sending_since, row.claimed_until) == ("sent", None, None)


async def test_an_update_owed_while_the_clicks_own_send_is_in_flight_follows_it(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    bot, alice = slack_bot(sqlite_store, slack, tmp_path)
    now = datetime.now(UTC)
    sender = Sender(sqlite_store, bot.deliverer, "test")
    woken: list[bool] = []
    bot.deliverer.updates = ClickUpdates(sender, lambda: woken.append(True))
    ingestor = Ingestor(sqlite_store, bot.deliverer, list(bot.deliverer.directories), None, ALWAYS)
    lead = LeadIn(external_id="C2", name="Tom Ito", owner_email="alice@example.com")
    (outcome,) = await ingestor.ingest([lead], now=now)
    await sender.drain(now)
    (card,) = posted_cards(slack, "U0ALICE")
    where = Where("slack", card["channel"])

    async def act(kind: Kind, name: str, values: dict[str, list[str]], **args: str) -> list[Any]:
        interaction = Interaction(kind, name, alice, where, args=args, values=values)
        effects = await bot.decide(interaction)
        await bot.deliverer.deliver(effects, None)
        return effects

    (opened,) = await act(Kind.action, "lead.log_attempt", {}, lead_id=str(outcome.lead_id))
    messenger = bot.deliverer.messengers["slack"]
    update = messenger.update
    logged: list[Any] = []

    async def update_while_the_lead_changes(location: Any, rendered: Any) -> None:
        # Slack has the accepted card; before we hear back, an attempt is logged.
        await update(location, rendered)
        messenger.update = update  # type: ignore[method-assign]
        values = {"channel": ["call"], "outcome": ["no_answer"]}
        logged.extend(await act(Kind.form, "lead.log_attempt", values, **opened.form.state))

    messenger.update = update_while_the_lead_changes  # type: ignore[method-assign,assignment]
    accepted = await act(Kind.action, "lead.accept", {}, lead_id=str(outcome.lead_id))
    (change,) = [e for e in accepted if isinstance(e, UpdateCards)]
    assert len(change.leased) == 1  # sent by the click itself
    # The attempt found the card in flight: not leased, owed to the outbox, which is woken.
    (later,) = [e for e in logged if isinstance(e, UpdateCards)]
    assert later.leased == () and Owed(1) in logged
    (first,) = updates(slack, card)
    assert "Accepted by Alice" in text_of(first) and "so far" not in text_of(first)
    assert woken  # the click's send saw a newer state owed meanwhile

    await sender.drain(datetime.now(UTC))
    (latest,) = updates(slack, card)[1:]
    assert "Accepted by Alice" in text_of(latest) and "1 so far" in text_of(latest)
    await sender.drain(datetime.now(UTC) + timedelta(minutes=1))
    assert len(updates(slack, card)) == 2


async def test_a_lease_never_used_runs_out_and_the_outbox_sends_the_card(
    any_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    """The process that leased a click's update died before sending it: once the lease has
    run out, a sender delivers the card in its latest state (SQLite and PostgreSQL)."""
    bot, alice = slack_bot(any_store, slack, tmp_path)
    now = datetime.now(UTC)
    sender = Sender(any_store, bot.deliverer, "survivor")
    ingestor = Ingestor(any_store, bot.deliverer, list(bot.deliverer.directories), None, ALWAYS)
    lead = LeadIn(external_id="C3", name="Ann Lee", owner_email="alice@example.com")
    (outcome,) = await ingestor.ingest([lead], now=now)
    await sender.drain(now)
    (card,) = posted_cards(slack, "U0ALICE")
    interaction = Interaction(
        Kind.action,
        "lead.accept",
        alice,
        Where("slack", card["channel"]),
        args={"lead_id": str(outcome.lead_id)},
    )
    effects = bot.router.dispatch(any_store, interaction, now, UpdateLease("dead:1", 60))
    (change,) = [e for e in effects if isinstance(e, UpdateCards)]
    assert len(change.leased) == 1  # … and never sent: its process is gone

    await sender.drain(now + timedelta(seconds=30))
    assert updates(slack, card) == []  # still leased to the dead process
    await sender.drain(now + timedelta(seconds=61))
    (update,) = updates(slack, card)
    assert "Accepted by Alice" in text_of(update)
    (row,) = update_rows(any_store)
    assert (row.status, row.claimed_by) == ("sent", "survivor")
