"""`liaison digest`: build a weekly digest and print it, or post it."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.common import fail, load_settings, now, one_session, open_store, out

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from digests.digest import Week
    from storage.db import Store

FORMATS = ("text", "json", "slack", "teams", "markdown", "html")


def digest_command(
    week: Annotated[str | None, typer.Option(help="ISO week like 2026-W48; default: last")] = None,
    format_: Annotated[str, typer.Option("--format", help="|".join(FORMATS))] = "text",
    post: Annotated[bool, typer.Option("--post", help="post it to the digest channel")] = False,
) -> None:
    """Build a weekly digest and print it (or post it with --post)."""
    from bot.slack.blocks import report_blocks
    from bot.teams.cards import report_card
    from digests.chart import chart_png
    from digests.digest import Week, build
    from digests.report import document, report
    from storage import policies

    if format_ not in FORMATS:
        fail(f"--format is one of {', '.join(FORMATS)}.")
    settings = load_settings()
    tz = settings.timezone
    try:
        chosen = Week.of(week, tz) if week else Week.last_complete(now(), tz)
    except ValueError as error:
        fail(f"--week {error}.")
    store = open_store(settings)
    if post:
        post_digest(settings, store, chosen)
        return
    with out.status(f"Building the digest of {chosen.label}…"), store.session() as session:
        made = build(session, chosen, now=now())
        version = policies.current_policy(session).version
    if format_ == "json":
        typer.echo(json.dumps(made.to_json(), indent=2))
        return
    chart = chart_png(made) if format_ in ("slack", "teams", "html") else None
    rendered = report(made, version=version, chart=chart)
    if format_ == "slack":
        typer.echo(json.dumps({"blocks": report_blocks(rendered)}, indent=2))
    elif format_ == "teams":
        typer.echo(json.dumps(report_card(rendered), indent=2))
    else:
        typer.echo(document(rendered, format_), nl=False)


def post_digest(settings: Settings, store: Store, week: Week) -> None:
    """Owe the digest of `week` to the digest channel (once: its key is the week) and send."""
    from bot.core.delivery import Deliverer
    from bot.outbox.sender import SendReport
    from bot.web.server import platform_messengers
    from digests.scheduler import for_settings
    from digests.weekly import digest_message
    from storage import channels as stored_channels
    from storage import outbox as stored_outbox

    with store.session() as session:
        target = stored_channels.channel_target(session, kind="digest") or settings.default_channel(
            "digest"
        )
    if not target:
        fail(
            "No digest channel: `liaison channels set digest slack:C0123` "
            "(or LIAISON_DIGEST_CHANNEL)."
        )
    with out.status(f"Building the digest of {week.label}…"), store.session() as session:
        message = digest_message(session, week, target=target, now=now())
        owed = stored_outbox.enqueue_many(session, messages=[message])
    if not owed:
        out.print(f"The {week.label} digest was already posted (see `liaison outbox`).")
        return
    sender = Deliverer(store, platform_messengers(settings, store))
    jobs = for_settings(settings, store, sender)

    async def run() -> SendReport:
        async with one_session(sender, settings):
            return await jobs.sender.drain(now())

    sent = asyncio.run(run())
    verdict = "posted" if sent.sent else "not posted yet (see `liaison outbox`)"
    out.print(f"The {week.label} digest is {verdict} to {target}.")
