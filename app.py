"""Liaison's composition root: every capability registered on one router, and the
`liaison` command line (bot/cli) that reads the settings, opens the store and starts an edge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.cli import launch, make_cli, out

if TYPE_CHECKING:
    from bot.core.business_time import Company
    from bot.core.router import Router

__all__ = ["build_router", "cli", "main", "out"]


def build_router(company: Company | None = None, channels: dict[str, str] | None = None) -> Router:
    """Every capability, registered explicitly; `channels` are the settings' defaults."""
    from bot.core.router import Router
    from digests import preview
    from handlers import (
        approvals,
        clocks,
        content,
        feedback,
        general,
        home,
        insights,
        leads,
        questions,
        sla,
        tone,
        wins,
    )

    router = Router.made(company, channels)
    for capability in (
        general,
        leads,
        questions,
        sla,
        clocks,
        tone,
        home,
        preview,
        approvals,
        feedback,
        content,
        insights,
        wins,
    ):
        capability.register(router)
    return router


cli = make_cli(build_router)


def main() -> None:
    launch(cli)


if __name__ == "__main__":
    main()
