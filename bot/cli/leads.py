"""`liaison import-leads` and `liaison demo`: many leads at once, with progress bars."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bot.cli.common import (
    deliverer,
    err,
    ingestor,
    load_settings,
    now,
    one_session,
    open_store,
    out,
)
from bot.cli.outbox import deliver_owed

BATCH = 200  # leads stored per transaction, as a webhook body might hold


def import_leads(file: Path) -> None:
    """Bulk import leads from a CSV file (same fields and idempotency as the webhook)."""
    from handlers.ingest import validate

    settings = load_settings()
    store = open_store(settings)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        err.print(f"[red]Cannot read {file}: {error}[/red]")
        raise typer.Exit(2) from error
    items = [
        {k: v for k, v in row.items() if k is not None and v not in (None, "")} for row in rows
    ]
    good, problems = validate(items, now=now())
    bad_rows = {p.index for p in problems}
    for problem in problems:
        # Row 1 is the header, so data row i is line i + 2.
        err.print(
            f"[red]row {problem.index + 2}[/red]: {problem.field or 'row'}: {problem.message}"
        )
    sender = deliverer(settings, store)
    leads_in = ingestor(settings, sender)

    async def run() -> None:
        created = duplicates = 0
        async with one_session(sender, settings):  # owner look-ups and cards, one session
            with Progress(console=out) as progress:
                task = progress.add_task("Importing leads", total=len(good))
                for start in range(0, len(good), BATCH):
                    batch = good[start : start + BATCH]
                    outcomes = await leads_in.ingest(batch, now=now())
                    created += sum(o.status == "created" for o in outcomes)
                    duplicates += sum(o.status == "duplicate" for o in outcomes)
                    progress.advance(task, len(batch))
            out.print(
                f"{created} imported, {duplicates} already known, {len(bad_rows)} rows refused."
            )
            if created:
                await deliver_owed(sender, settings, store)

    asyncio.run(run())
    if bad_rows:
        raise typer.Exit(1)


class LeadsPerSecond(ProgressColumn):
    """How fast the demo writes leads."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} leads/s" if speed else "", style="progress.data.speed")


def demo(
    leads: Annotated[int, typer.Option(min=0, help="leads over the last 26 weeks")] = 1500,
    seed: Annotated[int, typer.Option(help="another seed, another company")] = 7,
) -> None:
    """Fill the database with a reproducible demo company (running it again adds nothing)."""
    from digests.settle import settle_history
    from storage.demo.company import create_demo

    settings = load_settings()
    store = open_store(settings)
    started = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        LeadsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out) as progress, store.session() as session:
        task = progress.add_task("Demo company", total=leads)
        created = create_demo(
            session,
            leads=leads,
            seed=seed,
            now=now(),
            company=settings.company,
            progress=lambda n: progress.advance(task, n),
        )
    settle_history(store, now=now(), company=settings.company)
    out.print(
        f"Demo company ready: {created} new leads ({leads - created} were already there) "
        f"in {time.perf_counter() - started:.1f} s. Try `liaison console`."
    )
