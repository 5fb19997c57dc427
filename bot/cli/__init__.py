"""The `liaison` command line: an edge like Slack or Teams, calling the same handlers.

`make_cli(build_router)` builds it; the composition root (app.py) hands in how to build
the router, which the commands that run a bot read from the context."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import admin, check, data, digest, leads, outbox, run
from bot.cli.common import out
from bot.core.logs import configure

if TYPE_CHECKING:
    from bot.cli.common import RouterFactory

__all__ = ["launch", "make_cli", "out"]


def _logging(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show the full traceback of an unexpected failure")
    ] = False,
) -> None:
    """Text log lines until the settings are read (which may ask for JSON)."""
    configure("text", verbose=verbose)


def make_cli(build_router: RouterFactory) -> typer.Typer:
    """Every command and sub-command, with `build_router` as the context's object."""
    cli = typer.Typer(
        help="Liaison: the neutral go-between for sales and marketing.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"obj": build_router},
    )
    cli.callback()(_logging)
    cli.command()(run.serve)
    cli.command()(run.socket)
    cli.command()(run.console)
    cli.command()(run.tick)
    cli.command()(check.check)
    cli.command()(data.export)
    cli.command()(data.purge)
    cli.command("import-leads")(leads.import_leads)
    cli.command()(leads.demo)
    cli.command("digest")(digest.digest_command)
    cli.add_typer(run.db_cli, name="db")
    cli.add_typer(outbox.outbox_cli, name="outbox")
    for name, sub in admin.SUBCOMMANDS.items():
        cli.add_typer(sub, name=name)
    return cli


def launch(cli: typer.Typer, args: list[str] | None = None) -> None:
    """Run the command line: a failure no command foresaw is one line on stderr and exit 1
    (the database not answering says so); the traceback only with `--debug`."""
    args = sys.argv[1:] if args is None else args
    try:
        cli(args)
    except Exception as error:
        if "--debug" in args:
            raise
        from storage.db import reason, unavailable

        if unavailable(error):
            line = f"database unreachable: {reason(error)}"
        else:
            line = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        typer.echo(f"liaison: {line} (run again with --debug for the full traceback)", err=True)
        raise SystemExit(1) from None
