"""`liaison outbox`: the messages Liaison owes, listed and put back in line."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress

from bot.cli.common import FormatOption, fail, load_settings, now, open_store, out, print_rows

if TYPE_CHECKING:
    from bot.core.delivery import Deliverer
    from bot.core.settings import Settings
    from storage.db import Store

outbox_cli = typer.Typer(help="Messages Liaison owes: list and retry.", invoke_without_command=True)


@outbox_cli.callback()
def outbox_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending|sending|sent|failed")] = None,
    limit: int = 50,
    format_: FormatOption = "table",
) -> None:
    """List the outbox (newest first); `liaison outbox retry` puts failed ones back in line."""
    if ctx.invoked_subcommand is not None:
        return
    from storage.outbox import recent_messages

    store = open_store(load_settings())
    with store.session() as session:
        rows = [
            (
                str(row.id),
                row.key,
                name or (f"member {row.member_id}" if row.member_id else row.target or "-"),
                row.status,
                str(row.attempts),
                row.not_before.isoformat(timespec="minutes"),
                "all" if row.status == "sent" else ", ".join(row.parts_done or {}),
                row.last_error or "",
                row.request_id or "",
            )
            for row, name in recent_messages(session, status=status, limit=limit)
        ]
    print_rows(COLUMNS, rows, format_)


COLUMNS = ("id", "key", "to", "status", "attempts", "not before", "parts done", "error", "request")


@outbox_cli.command("retry")
def outbox_retry(ids: Annotated[list[int] | None, typer.Argument()] = None) -> None:
    """Put failed messages (all, or the given ids) back in line for the next tick."""
    from storage.outbox import retry, statuses

    store = open_store(load_settings())
    with store.session() as session:
        if ids:
            known = statuses(session, ids=ids)
            if unknown := [i for i in ids if i not in known]:
                fail(
                    f"No message {', '.join(map(str, unknown))} in the outbox "
                    "(see `liaison outbox`).",
                    1,
                )
            if unfailed := [i for i in ids if known[i] != "failed"]:
                fail(
                    ", ".join(f"{i} is {known[i]}" for i in unfailed)
                    + ": only failed messages go back in line.",
                    1,
                )
        count = retry(session, ids=ids, now=now())
    out.print(f"{count} message{'s' if count != 1 else ''} back in line.")


async def deliver_owed(sender: Deliverer, settings: Settings, store: Store) -> None:
    """Drain the outbox with a progress bar (Slack takes about one message a second per
    person); what waits for someone's working hours is left to `serve` or `tick`."""
    from bot.outbox.sender import SendReport
    from digests.scheduler import Scheduler
    from storage.outbox import due_count, held_count

    def due() -> int:
        with store.session() as session:
            return due_count(session, now=now())

    def held() -> int:
        with store.session() as session:
            return held_count(session, now=now())

    jobs = Scheduler(
        store,
        sender,
        settings.company,
        lease_seconds=settings.outbox_lease_seconds,
        admin_channel=settings.default_channel("admin"),
    )
    report = SendReport()
    total = await asyncio.to_thread(due)
    with Progress(console=out) as progress:
        task = progress.add_task("Delivering cards", total=total)
        sending = asyncio.create_task(jobs.sender.drain(now(), report=report))
        while not sending.done():
            progress.update(task, completed=report.sent + report.failed + report.retried)
            await asyncio.sleep(0.1)
        progress.update(task, completed=total)
        sending.result()
    waiting = await asyncio.to_thread(held)
    out.print(
        f"{report.sent} cards delivered, {report.retried} to retry, {report.failed} failed"
        + (f", {waiting} waiting for their recipients' working hours" if waiting else "")
        + (" (see `liaison outbox`)." if report.failed else ".")
    )
