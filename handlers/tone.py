"""The tone check on text relayed from one side to the other, and its editable word list.

Blaming or contemptuous phrasing is not relayed as written: the author gets a private note
quoting what matched and suggesting the structured alternative. The check is explainable
(it names the phrase), phrases match as whole words ("kill the deal" is not an insult), and
the list is data that admins edit with `/tone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session

from bot.core.effects import Effect, Reply
from bot.core.interaction import Interaction
from bot.core.messages import Card, Fact
from bot.core.router import Context, Router
from bot.core.text import text_for
from handlers.common import private, refuse_unless
from storage import tone as stored_tone
from storage.models import Role, ToneKind

# Three or more words in capitals in a row, at least ten letters: shouting, not an acronym.
_CAPS_RUN = re.compile(r"\b(?:[A-Z][A-Z'!?]+\W+){2,}[A-Z][A-Z'!?]+\b")
PHRASE_LIMIT = 60
SUGGESTION_LIMIT = 200


@dataclass(frozen=True)
class ToneFlag:
    """What the check matched, as written, and what to do instead."""

    phrase: str
    kind: str
    suggestion: str


def _pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\W+".join(words) + r"(?!\w)", re.IGNORECASE)


def _shouting(text: str) -> str | None:
    for match in _CAPS_RUN.finditer(text):
        if sum(c.isalpha() for c in match.group(0)) >= 10:
            return match.group(0)
    return None


def check(session: Session, text: str) -> ToneFlag | None:
    """The first blaming, contemptuous or shouting phrase in `text`, or None."""
    for rule in stored_tone.tone_rules(session):
        found = _pattern(rule.phrase).search(text)
        if found:
            return ToneFlag(found.group(0), rule.kind, rule.suggestion)
    shout = _shouting(text)
    if shout:
        return ToneFlag(shout, "shouting", text_for("tone_shouting_suggestion"))
    return None


def held_back(flag: ToneFlag) -> str:
    """The private note for the author: what matched, that it was not sent, what instead."""
    return text_for("tone_held", phrase=flag.phrase, kind=flag.kind, suggestion=flag.suggestion)


def first_flag(session: Session, texts: dict[str, str]) -> dict[str, str]:
    """Form errors for the first input (by name) whose text the tone check holds back."""
    for name, text in texts.items():
        flag = check(session, text) if text else None
        if flag is not None:
            return {name: held_back(flag)}
    return {}


# ---------------------------------------------------------------- /tone for admins


def register(router: Router) -> None:
    router.command(
        "tone",
        tone,
        summary=text_for("help_tone"),
        usage="tone [check TEXT | add PHRASE | remove …]",
    )


def tone(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`tone` lists the rules, `tone check TEXT` explains; `add` and `remove` are for admins."""
    verb, _, rest = interaction.text.strip().partition(" ")
    rest = rest.strip()
    if verb in ("", "list"):
        return [Reply(_rules_card(ctx.session))]
    if verb == "check":
        if not rest:
            return private(text_for("tone_usage"))
        flag = check(ctx.session, rest)
        return private(held_back(flag) if flag else text_for("tone_fine"))
    if verb not in ("add", "remove"):
        return private(text_for("tone_usage"))
    refused = refuse_unless(interaction.actor, Role.admin, action=text_for("action_edit_tone"))
    if refused:
        return refused
    if verb == "remove":
        if stored_tone.remove_tone_rule(ctx.session, phrase=rest):
            return private(text_for("tone_removed", phrase=rest))
        return private(text_for("tone_unknown", phrase=rest))
    return _add(ctx, interaction, rest)


def _add(ctx: Context, interaction: Interaction, rest: str) -> list[Effect]:
    """`tone add PHRASE [| suggestion] [as blame|contempt|insult]`."""
    phrase, _, suggestion = rest.partition("|")
    phrase, suggestion = " ".join(phrase.split()), suggestion.strip()
    kind = ToneKind.blame.value
    for candidate in ToneKind:
        if phrase.endswith(f" as {candidate.value}"):
            phrase, kind = phrase[: -len(f" as {candidate.value}")].strip(), candidate.value
    if not phrase or len(phrase) > PHRASE_LIMIT or len(suggestion) > SUGGESTION_LIMIT:
        return private(text_for("tone_usage"))
    stored_tone.add_tone_rule(
        ctx.session,
        phrase=phrase,
        kind=kind,
        suggestion=suggestion or text_for("tone_default_suggestion"),
        created_by=interaction.actor.name,
        now=ctx.now,
    )
    return private(text_for("tone_added", phrase=phrase, kind=kind))


def _rules_card(session: Session) -> Card:
    rules = stored_tone.tone_rules(session)
    return Card(
        title=text_for("tone_title", count=len(rules)),
        text=text_for("tone_intro"),
        fields=tuple(Fact(rule.phrase, f"{rule.kind}: {rule.suggestion}") for rule in rules),
        context=text_for("tone_context"),
    )
