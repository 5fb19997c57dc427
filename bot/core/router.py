"""Handlers register here explicitly; `dispatch` runs one interaction in one transaction,
and the messages it owes others are written to the outbox in that same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.core.business_time import Company
from bot.core.effects import Effect, FormErrors
from bot.core.interaction import Interaction, Kind
from bot.core.owing import UpdateLease, write_to_outbox
from storage import channels as stored_channels
from storage import requests
from storage.db import Store

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a handler may use: the open session, the time of the request, the company's
    working week and the default channels (`LIAISON_<KIND>_CHANNEL`)."""

    session: Session
    now: datetime
    company: Company = field(default_factory=Company)
    channels: dict[str, str] = field(default_factory=dict)

    def channel(self, kind: str) -> str | None:
        """Where posts of `kind` (wins, insights, digest, admin…) go: the channel an admin
        set (`liaison channels set`), else the setting's default, else None."""
        return stored_channels.channel_target(self.session, kind=kind) or self.channels.get(kind)


Handler = Callable[[Context, Interaction], list[Effect]]


@dataclass
class Route:
    handler: Handler
    summary: str = ""
    usage: str = ""


@dataclass
class Router:
    """Maps (kind, name) to a handler. Unknown commands fall through to `fallback`."""

    routes: dict[tuple[Kind, str], Route] = field(default_factory=dict)
    verbs: dict[tuple[str, str], Route] = field(default_factory=dict)
    fallback: Handler | None = None
    company: Company = field(default_factory=Company)
    channels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def made(cls, company: Company | None = None, channels: dict[str, str] | None = None) -> Router:
        """An empty router for `company` (the defaults when None) and channel settings."""
        return cls(company=company or Company(), channels=dict(channels or {}))

    def command(self, name: str, handler: Handler, *, summary: str, usage: str = "") -> None:
        self.routes[(Kind.command, name)] = Route(handler, summary, usage or f"/{name}")

    def subcommand(self, name: str, verb: str, handler: Handler, *, usage: str = "") -> None:
        """`name verb …` goes to `handler` (with the rest as its text) instead of the
        command `name`, so one capability can add a verb to another's command
        (`leaddef propose`) without either importing the other."""
        self.verbs[(name, verb)] = Route(handler, usage=usage or f"/{name} {verb}")

    def action(self, name: str, handler: Handler) -> None:
        self.routes[(Kind.action, name)] = Route(handler)

    def form(self, name: str, handler: Handler) -> None:
        self.routes[(Kind.form, name)] = Route(handler)

    def commands(self) -> list[tuple[str, Route]]:
        """The commands a person can type, for help texts and manifests."""
        return sorted((name, r) for (kind, name), r in self.routes.items() if kind is Kind.command)

    def handles(self, interaction: Interaction) -> bool:
        return (interaction.kind, interaction.name) in self.routes

    def _route(self, interaction: Interaction) -> tuple[Route | None, Interaction]:
        """The route of an interaction; a command's first word may name a subcommand."""
        if interaction.kind is Kind.command:
            verb, _, rest = interaction.text.strip().partition(" ")
            sub = self.verbs.get((interaction.name, verb.lower()))
            if sub is not None:
                return sub, replace(interaction, text=rest.strip())
        return self.routes.get((interaction.kind, interaction.name)), interaction

    def dispatch(
        self,
        store: Store,
        interaction: Interaction,
        now: datetime,
        lease: UpdateLease | None = None,
    ) -> list[Effect]:
        """Run the interaction's handler once; a repeated `request_id` has no effect. With
        `lease`, the card updates it owes are leased for the caller to send (`owe`)."""
        route, interaction = self._route(interaction)
        handler = route.handler if route else self.fallback
        if handler is None:
            log.warning("no handler for %s %s", interaction.kind, interaction.name)
            return []
        try:
            with store.session() as session:
                if interaction.request_id and not requests.claim_request(
                    session,
                    platform=interaction.where.platform,
                    request_id=interaction.request_id,
                    now=now,
                ):
                    log.info("duplicate request %s ignored", interaction.request_id)
                    return []
                effects = handler(Context(session, now, self.company, self.channels), interaction)
                if any(isinstance(effect, FormErrors) for effect in effects):
                    # Nothing is recorded for a refused form, so the corrected resubmit
                    # (which carries the same request id) is still processed.
                    session.rollback()
                    return effects
                return write_to_outbox(
                    session,
                    effects,
                    actor_id=interaction.actor.id,
                    now=now,
                    company=self.company,
                    lease=lease,
                )
        except IntegrityError:
            # Another worker recorded the same request id between our check and commit.
            log.info("request %s raced a duplicate; ignored", interaction.request_id)
            return []
