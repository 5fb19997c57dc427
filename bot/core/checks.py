"""Preflight checks: one line each, ✓ or ✗, saying what is wrong and what to do; a fatal
one stops `serve` and `socket` from starting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.core.settings import Settings

PREFLIGHT_TIMEOUT = 5.0  # seconds any platform may take to answer a check


@dataclass(frozen=True)
class Check:
    """One thing checked: `ok` None means not configured, so not checked."""

    name: str
    ok: bool | None
    detail: str
    fatal: bool = False

    @property
    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "·"}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


def database_check(settings: Settings) -> tuple[Check, str | None]:
    """Reachable, and at the latest migration (read, not changed); with the migration the
    database is at (None: unreachable, or no schema yet)."""
    from storage.db import reason, safe_url, unavailable
    from storage.schema import revisions

    where = safe_url(settings.database_url)
    try:
        current, head = revisions(settings.database_url)
    except Exception as error:
        if not unavailable(error):
            raise
        return Check("database", False, f"{where} unreachable: {reason(error)}", True), None
    if current == head:
        return Check(
            "database", True, f"{where} reachable, schema at {current} (the latest)"
        ), current
    at = f"schema at {current}" if current else "no schema yet"
    behind = Check(
        "database",
        False,
        f"{where} reachable, {at}, the latest is {head}: run `liaison db upgrade` "
        "(`serve` and `socket` upgrade it as they start)",
    )
    return behind, current


def webhook_check(settings: Settings) -> Check:
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return Check("lead webhook secret", True, "set (POST /api/leads checks each signature)")
    return Check(
        "lead webhook secret",
        False,
        "LIAISON_WEBHOOK_SECRET is not set: POST /api/leads answers 503 until it is",
    )
