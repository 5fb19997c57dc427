"""`/digest preview` (the digest so far, privately, for anyone) and `/digest me on|off`
(a private "your week" note every Monday): the one command of the digests, registered on
the router by the composition root as a handler's is."""

from __future__ import annotations

from bot.core.effects import Effect, ShowReport
from bot.core.interaction import Interaction
from bot.core.router import Context, Router
from bot.core.text import text_for
from digests.digest import Week
from digests.weekly import digest_report
from handlers.common import private
from storage import digest_runs
from storage.models import Member


def register(router: Router) -> None:
    router.command(
        "digest",
        digest,
        summary=text_for("help_digest"),
        usage="digest [preview | last | me on|off]",
    )


def digest(ctx: Context, interaction: Interaction) -> list[Effect]:
    words = interaction.text.lower().split()
    if words in ([], ["preview"]):
        return _preview(ctx, Week.containing(ctx.now, ctx.company.tz))
    if words == ["last"]:
        return _preview(ctx, Week.last_complete(ctx.now, ctx.company.tz))
    if len(words) == 2 and words[0] == "me" and words[1] in ("on", "off"):
        me = ctx.session.get(Member, interaction.actor.id)
        if me is None:
            return private(text_for("digest_usage"))
        digest_runs.set_weekly_note(ctx.session, member=me, on=words[1] == "on")
        return private(text_for("digest_me_on" if me.weekly_digest else "digest_me_off"))
    return private(text_for("digest_usage"))


def _preview(ctx: Context, week: Week) -> list[Effect]:
    return [ShowReport(digest_report(ctx.session, week, ctx.now))]
