"""Help, the lead definition, and the answer to anything the bot does not understand."""

from __future__ import annotations

from bot.core.effects import Effect, Reply
from bot.core.interaction import Interaction
from bot.core.messages import Card, Fact
from bot.core.router import Context, Handler, Router
from bot.core.text import text_for
from storage import definitions


def register(router: Router) -> None:
    router.command("help", make_help(router), summary=text_for("help_help"))
    router.command("leaddef", show_definition, summary=text_for("help_leaddef"))
    router.fallback = make_unknown(router)


def help_card(router: Router, platform: str) -> Card:
    prefix = "/liaison " if platform == "slack" else ("" if platform == "teams" else "/")
    fields = tuple(Fact(f"{prefix}{name}", route.summary) for name, route in router.commands())
    return Card(
        title=text_for("help_title"),
        text=text_for("help_intro"),
        fields=fields,
        context=text_for("help_footer", platform=platform),
    )


def make_help(router: Router) -> Handler:
    def show_help(ctx: Context, interaction: Interaction) -> list[Effect]:
        return [Reply(help_card(router, interaction.where.platform))]

    return show_help


def make_unknown(router: Router) -> Handler:
    def unknown(ctx: Context, interaction: Interaction) -> list[Effect]:
        card = help_card(router, interaction.where.platform)
        text = text_for("unknown_command", command=interaction.name or interaction.text)
        return [Reply(Card(title=card.title, text=text, fields=card.fields))]

    return unknown


def show_definition(ctx: Context, interaction: Interaction) -> list[Effect]:
    definition, criteria = definitions.current_definition(ctx.session)
    return [
        Reply(
            Card(
                title=text_for("leaddef_title", version=definition.version),
                text=text_for("leaddef_intro", note=definition.note),
                fields=tuple(Fact(c.key, c.text) for c in criteria),
                context=text_for(
                    "leaddef_context", by=definition.created_by, at=definition.created_at
                ),
            )
        )
    ]
