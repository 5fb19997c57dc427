"""`liaison check`: is this setup ready to run? One line per thing checked, ✓ or ✗ with the
fix; `serve` and `socket` run the same checks as they start and refuse a fatal one."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import typer

from bot.cli.common import load_settings, out
from bot.core.checks import Check, database_check, webhook_check

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from storage.db import Store

log = logging.getLogger("liaison.preflight")


def check() -> None:
    """Check the database, Slack, Teams, the channels and the webhook; exit 1 on any ✗."""
    from storage.db import Store

    settings = load_settings()
    database, revision = database_check(settings)
    # A schema, even one behind, has its channel settings to read; an empty or unreachable
    # database has none. Nothing is migrated: a check changes nothing.
    store = Store.open(settings.database_url, migrate=False) if revision else None
    try:
        socket_mode = settings.slack_app_token is not None
        found = [database, *asyncio.run(platform_checks(settings, store, socket_mode=socket_mode))]
    finally:
        if store is not None:
            store.engine.dispose()
    for line in found:
        out.print(line.line, markup=False, highlight=False)
    if any(c.ok is False for c in found):
        raise typer.Exit(1)


async def platform_checks(
    settings: Settings, store: Store | None, *, socket_mode: bool = False
) -> list[Check]:
    """Slack's and Teams' lines (their configured channels too, when the store answers) and
    the webhook's; `socket_mode`: Slack over Socket Mode, which needs no signing secret."""
    from bot.slack.preflight import slack_checks
    from bot.teams.preflight import teams_checks

    targets = configured_channels(settings, store)
    slack = [(kind, t.removeprefix("slack:")) for kind, t in targets if t.startswith("slack:")]
    teams = [(kind, t.removeprefix("teams:")) for kind, t in targets if t.startswith("teams:")]
    jobs = (
        slack_checks(settings, slack, socket_mode=socket_mode),
        teams_checks(settings, store, teams),
    )
    found = [c for part in await asyncio.gather(*jobs) for c in part]
    return [*found, webhook_check(settings)]


def configured_channels(settings: Settings, store: Store | None) -> list[tuple[str, str]]:
    """Each channel kind's target: set with `liaison channels set`, else the settings'."""
    from bot.core.settings import CHANNEL_KINDS
    from storage import channels as stored_channels

    chosen = settings.channels()
    if store is not None:
        with store.session() as session:
            for kind in CHANNEL_KINDS:
                if target := stored_channels.channel_target(session, kind=kind):
                    chosen[kind] = target
    return sorted(chosen.items())


def refuse_to_start(settings: Settings, store: Store, *, socket_mode: bool = False) -> None:
    """The start of `serve` and `socket`: a fatal check is one line and exit 1; the others
    are logged (a warning for each ✗)."""
    for found in asyncio.run(platform_checks(settings, store, socket_mode=socket_mode)):
        if found.ok is False and found.fatal:
            out.print(found.line, markup=False, highlight=False)
            raise typer.Exit(1)
        if found.ok is False:
            log.warning("%s", found.line)
        else:
            log.info("%s", found.line)
