"""The data an operator owns: `liaison export` (the audit trail for BI tools and backups)
and `liaison purge` (lead personal data past its retention, the anonymous counts kept)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import Progress

from bot.cli.common import err, fail, load_settings, open_store, out

EXPORT_FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("type", "at", "id", "lead_id", "member", "kind", "detail")


def day(text: str, option: str) -> datetime:
    """YYYY-MM-DD as the start of that day in UTC, or exit naming the option."""
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        fail(f"{option} {text!r} is not a date: use YYYY-MM-DD.")


def export(
    since: Annotated[str, typer.Option(help="records from this day on (YYYY-MM-DD, UTC)")],
    format_: Annotated[str, typer.Option("--format", help="jsonl|csv")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="a file instead of standard output")
    ] = None,
) -> None:
    """Write the audit trail: lead events (verdicts with reasons), SLA clocks, approvals
    with sign-offs, feedback requests and answers, in time order."""
    from storage.audit import trail, trail_size

    if format_ not in EXPORT_FORMATS:
        fail(f"--format is one of {', '.join(EXPORT_FORMATS)}.")
    start = day(since, "--since")
    store = open_store(load_settings())
    try:
        handle = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as error:
        fail(f"Cannot write {output}: {error.strerror}.")
    written = 0
    try:
        with store.reading() as session, Progress(console=err, disable=output is None) as bar:
            task = bar.add_task("Exporting", total=trail_size(session, since=start))
            write = _writer(handle, format_)
            for record in trail(session, since=start):
                write(record)
                written += 1
                bar.advance(task)
    finally:
        if output is not None:
            handle.close()
    if output is not None:
        out.print(f"{written} records written to {output}.")


def _writer(handle: IO[str], format_: str) -> Any:
    if format_ == "jsonl":
        return lambda record: handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    table = csv.writer(handle, lineterminator="\n")
    table.writerow(CSV_COLUMNS)

    def row(record: dict[str, Any]) -> None:
        rest = {k: v for k, v in record.items() if k not in CSV_COLUMNS}
        table.writerow(
            [record.get(c, "") if c != "detail" else json.dumps(rest) for c in CSV_COLUMNS]
        )

    return row


def purge(
    before: Annotated[str, typer.Option(help="leads created before this day (YYYY-MM-DD, UTC)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, change nothing")] = False,
) -> None:
    """Remove the personal data of leads created before a day (name, company, email, title,
    attributes, free text in their events, their sent cards); the digests' counts stay."""
    from storage.retention import purge as remove
    from storage.retention import purge_count

    cutoff = day(before, "--before")
    store = open_store(load_settings())
    with Progress(console=err) as bar:
        task = bar.add_task(
            "Counting" if dry_run else "Purging", total=purge_count(store, before=cutoff)
        )
        done = remove(
            store, before=cutoff, dry_run=dry_run, progress=lambda n: bar.advance(task, n)
        )
    verb = "would lose" if dry_run else "lost"
    out.print(
        f"{done.leads} leads created before {cutoff:%Y-%m-%d} {verb} their personal data "
        f"({done.events} events with free text, {done.cards} sent cards)"
        + (": nothing was changed (--dry-run)." if dry_run else ".")
    )
