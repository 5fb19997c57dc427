"""Content reps can send: `/content <words>` searches it (privately), `/content add` lets
marketers register an item."""

from __future__ import annotations

from sqlmodel import Session

from bot.core.effects import Effect, FormErrors, Reply, ShowForm
from bot.core.interaction import Interaction
from bot.core.messages import Card, Fact, Form, Input, InputKind, Option
from bot.core.router import Context, Router
from bot.core.text import text_for
from handlers.common import nonce, refuse_unless
from handlers.form_fields import LINK_LIMIT, tags_of, web_link
from storage import content
from storage.models import ContentItem, Role

TITLE_LIMIT = 150
DESCRIPTION_LIMIT = 1000
EXCERPT = 160
RESULTS = 5
WORDS_LIMIT = 200


def register(router: Router) -> None:
    router.command(
        "content", content_command, summary=text_for("help_content"), usage="content WORDS | add"
    )
    router.form("content.add", submit_add)


def content_command(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`content` shows how and the newest items; `content add` opens the form (marketers);
    anything else is searched for."""
    words = interaction.text.strip()
    verb, _, rest = words.partition(" ")
    if verb.lower() == "add":
        return open_add(ctx, interaction, rest.strip())
    if not words:
        return [Reply(_newest_card(ctx.session))]
    return [Reply(results_card(ctx.session, words[:WORDS_LIMIT]))]


# ---------------------------------------------------------------- search


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """The start of `text`, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def content_field(item: ContentItem) -> Fact:
    """One item: its title linking to it, then stage, tags and the description's start."""
    return Fact(
        item.title,
        text_for(
            "content_line",
            stage=item.stage.capitalize(),
            tags=item.tags,
            description=excerpt(item.description),
            link=item.link,
        ),
        link=item.link,
    )


def results_card(session: Session, words: str) -> Card:
    found = content.search(session, words=words, limit=RESULTS)
    if not found:
        return Card(
            title=text_for("content_none_title", words=words),
            text=text_for("content_none_text"),
            context=text_for("content_how_to_add"),
        )
    return Card(
        title=text_for("content_results_title", words=words, count=len(found)),
        fields=tuple(content_field(item) for item in found),
        context=text_for("content_results_context"),
    )


def _newest_card(session: Session) -> Card:
    items = content.newest(session, limit=RESULTS)
    return Card(
        title=text_for("content_usage_title"),
        text=text_for("content_usage", total=content.count(session), shown=len(items)),
        fields=tuple(content_field(item) for item in items),
        context=text_for("content_how_to_add"),
    )


# ---------------------------------------------------------------- add


def open_add(ctx: Context, interaction: Interaction, title: str = "") -> list[Effect]:
    refused = refuse_unless(interaction.actor, Role.marketer, action=text_for("content_action_add"))
    if refused:
        return refused
    form = Form(
        name="content.add",
        title=text_for("content_form_title"),
        intro=text_for("content_form_intro"),
        inputs=(
            Input(
                "title",
                text_for("content_title_label"),
                max_length=TITLE_LIMIT,
                initial=(title[:TITLE_LIMIT],) if title else (),
            ),
            Input(
                "link",
                text_for("content_link_label"),
                max_length=LINK_LIMIT,
                placeholder="https://",
            ),
            Input(
                "description",
                text_for("content_description_label"),
                InputKind.multiline,
                required=False,
                max_length=DESCRIPTION_LIMIT,
            ),
            Input(
                "tags",
                text_for("content_tags_label"),
                required=False,
                max_length=500,
                placeholder=text_for("content_tags_placeholder"),
            ),
            Input(
                "stage",
                text_for("content_stage_label"),
                InputKind.select,
                tuple(Option(s, s.capitalize()) for s in content.STAGES),
            ),
        ),
        submit_label=text_for("content_button_add"),
        state={"nonce": nonce()},
    )
    return [ShowForm(form)]


def new_item_errors(
    session: Session, *, title: str, link: str, title_input: str, link_input: str
) -> tuple[str, dict[str, str]]:
    """The normal form of a new item's link, and what is wrong with its title or link
    (empty, too long, not http(s), already registered), by input name."""
    errors: dict[str, str] = {}
    if not title:
        errors[title_input] = text_for("content_title_empty")
    elif len(title) > TITLE_LIMIT:
        errors[title_input] = text_for("too_long", limit=TITLE_LIMIT)
    normal = web_link(link)
    if not link:
        errors[link_input] = text_for("content_link_empty")
    elif not normal:
        errors[link_input] = text_for("content_link_invalid")
    else:
        existing = content.by_link(session, link=normal)
        if existing is not None:
            errors[link_input] = text_for(
                "content_link_taken", title=existing.title, content_id=existing.id
            )
    return normal, errors


def submit_add(ctx: Context, interaction: Interaction) -> list[Effect]:
    refused = refuse_unless(interaction.actor, Role.marketer, action=text_for("content_action_add"))
    if refused:
        return refused
    title = " ".join(interaction.value("title").split())
    description = interaction.value("description")
    stage = interaction.value("stage").lower()
    link, errors = new_item_errors(
        ctx.session,
        title=title,
        link=interaction.value("link"),
        title_input="title",
        link_input="link",
    )
    if len(description) > DESCRIPTION_LIMIT:
        errors["description"] = text_for("too_long", limit=DESCRIPTION_LIMIT)
    tags = tags_of(interaction.value("tags"))
    if isinstance(tags, str):
        errors["tags"] = tags
    if stage not in content.STAGES:
        errors["stage"] = text_for("content_pick_stage", stages=content.STAGES)
    if errors or isinstance(tags, str):
        return [FormErrors(errors)]
    item = content.add(
        ctx.session,
        title=title,
        link=link,
        description=description,
        tags=tags,
        stage=stage,
        added_by=interaction.actor.id,
        now=ctx.now,
    )
    return [
        Reply(
            Card(
                title=text_for("content_added_title", title=item.title),
                fields=(content_field(item),),
                context=text_for("content_added_context", content_id=item.id),
            )
        )
    ]
