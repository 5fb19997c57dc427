"""Insights → content: what buyers ask or object to goes from the field to marketing, who
claim it, answer it (ideally with content made for it) and close the loop with the rep."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from bot.core.effects import Effect, FormErrors, Notify, Post, Reply, ShowForm
from bot.core.interaction import Interaction
from bot.core.messages import Button, Card, Fact, Form, Input, InputKind, Option, Style
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers import tone
from handlers.cards import member_name
from handlers.common import load_lead, may_act_on, nonce, private, refuse_unless, unknown_lead
from handlers.content import TITLE_LIMIT, content_field, new_item_errors
from handlers.form_fields import LINK_LIMIT, campaign_choice, campaign_options, tags_of
from storage import content, insights, members
from storage.models import Campaign, Insight, InsightStatus, Lead, Member, Role

KINDS = ("question", "objection", "request", "other")
TEXT_LIMIT = 1000
ANSWER_LIMIT = 2000
SUGGESTIONS = 10
LISTED = 10
MARKETING = (Role.marketer.value, Role.admin.value)


def register(router: Router) -> None:
    router.command(
        "insight",
        insight_command,
        summary=text_for("help_insight"),
        usage="insight [TEXT | list | duty [off]]",
    )
    router.command("insights", list_insights, summary=text_for("help_insights"))
    router.action("insight.share", share_from_lead)
    router.form("insight.new", submit_insight)
    router.action("insight.claim", claim)
    router.action("insight.answer", open_answer)
    router.form("insight.answer", submit_answer)


def insight_command(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`insight` opens the form (TEXT pre-fills it), `insight list` shows what is open,
    `insight duty [off]` puts a marketer on insights duty (or off)."""
    verb, _, rest = interaction.text.strip().partition(" ")
    if verb.lower() == "list" and not rest.strip():
        return list_insights(ctx, interaction)
    if verb.lower() == "duty":
        return duty(ctx, interaction, rest.strip().lower())
    return [ShowForm(_insight_form(ctx.session, None, interaction.text.strip()))]


# ---------------------------------------------------------------- raising an insight


def share_from_lead(ctx: Context, interaction: Interaction) -> list[Effect]:
    """**Share insight** on a handoff card: the form, about that lead and its campaign."""
    lead = _own_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    return [ShowForm(_insight_form(ctx.session, lead, ""))]


def _own_lead(ctx: Context, interaction: Interaction) -> Lead | list[Effect]:
    """The lead named by `lead_id`, if the actor may act on it (its owner or their
    manager), else the private answer; the id comes from the client, so the refusal
    says nothing of the lead."""
    lead = load_lead(ctx.session, interaction.arg("lead_id"))
    if lead is None:
        return unknown_lead()
    if not may_act_on(ctx.session, lead, interaction.actor):
        return private(text_for("insight_lead_not_yours"))
    return lead


def _insight_form(session: Session, lead: Lead | None, text: str) -> Form:
    campaigns = campaign_options(session)
    inputs = [
        Input(
            "text",
            text_for("insight_text_label"),
            InputKind.multiline,
            max_length=TEXT_LIMIT,
            initial=(text[:TEXT_LIMIT],) if text else (),
        ),
        Input(
            "kind",
            text_for("insight_kind_label"),
            InputKind.select,
            tuple(Option(k, text_for("insight_kind", kind=k)) for k in KINDS),
            initial=("question",),
        ),
    ]
    if campaigns:
        initial = (str(lead.campaign_id),) if lead is not None and lead.campaign_id else ()
        inputs.append(
            Input(
                "campaign",
                text_for("insight_campaign_label"),
                InputKind.select,
                campaigns,
                required=False,
                initial=initial,
            )
        )
    inputs.append(
        Input(
            "tags",
            text_for("insight_tags_label"),
            required=False,
            max_length=500,
            placeholder=text_for("insight_tags_placeholder"),
        )
    )
    state = {"nonce": nonce()}
    if lead is not None:
        state["lead_id"] = str(lead.id)
    return Form(
        name="insight.new",
        title=text_for("insight_form_title"),
        intro=text_for(
            "insight_form_intro",
            lead=lead.name if lead else None,
            company=lead.company if lead else None,
        ),
        inputs=tuple(inputs),
        submit_label=text_for("insight_button_send"),
        state=state,
    )


@dataclass(frozen=True)
class NewInsight:
    """A submitted insight that passed every check."""

    text: str
    kind: str
    campaign: Campaign | None
    tags: list[str]
    lead: Lead | None


def _checked(ctx: Context, interaction: Interaction) -> NewInsight | list[Effect]:
    """The submitted insight, or the form errors (or private answer) that say what is wrong."""
    text, kind = interaction.value("text"), interaction.value("kind").lower() or "question"
    errors: dict[str, str] = {}
    if not text:
        errors["text"] = text_for("insight_text_empty")
    elif len(text) > TEXT_LIMIT:
        errors["text"] = text_for("too_long", limit=TEXT_LIMIT)
    else:
        errors.update(tone.first_flag(ctx.session, {"text": text}))
    if kind not in KINDS:
        errors["kind"] = text_for("insight_pick_kind", kinds=KINDS)
    campaign = campaign_choice(ctx.session, interaction.value("campaign"))
    if isinstance(campaign, str):
        errors["campaign"] = campaign
    tags = tags_of(interaction.value("tags"))
    if isinstance(tags, str):
        errors["tags"] = tags
    lead = _own_lead(ctx, interaction) if interaction.arg("lead_id") else None
    if isinstance(lead, list):
        return lead
    if errors or isinstance(campaign, str) or isinstance(tags, str):
        return [FormErrors(errors)]
    return NewInsight(text, kind, campaign, tags, lead)


def submit_insight(ctx: Context, interaction: Interaction) -> list[Effect]:
    new = _checked(ctx, interaction)
    if isinstance(new, list):
        return new
    routed, recipients, via = _route(ctx.session, new.campaign)
    insight = insights.add(
        ctx.session,
        author_id=interaction.actor.id or 0,
        kind=new.kind,
        text=new.text,
        lead_id=new.lead.id if new.lead else None,
        campaign_id=new.campaign.id if new.campaign else None,
        tags=new.tags,
        marketer_id=routed,
        now=ctx.now,
    )
    effects: list[Effect] = [
        Notify(
            m.id or 0,
            insight_card(ctx.session, insight, for_marketing=True, tz=m.timezone),
            key=f"insight:{insight.id}:to:{m.id}",
        )
        for m in recipients
        if m.id != interaction.actor.id
    ]
    target = ctx.channel("insights")
    if target:
        card = insight_card(ctx.session, insight, for_marketing=True, tz=ctx.company.tz)
        effects.append(Post(target, card, key=f"insight:{insight.id}:posted"))
    sent = text_for(
        "insight_sent",
        insight_id=insight.id,
        names=[m.name for m in recipients],
        via=via,
        campaign=new.campaign.name if new.campaign else None,
        channel=bool(target),
    )
    return [*effects, *private(sent)]


def _route(session: Session, campaign: Campaign | None) -> tuple[int | None, list[Member], str]:
    """Who hears of a new insight: the campaign's marketer, else the marketer on duty,
    else every marketer; also who it is assigned to (None when it went to all)."""
    if campaign is not None and campaign.marketer_id is not None:
        marketer = session.get(Member, campaign.marketer_id)
        if marketer is not None:
            return marketer.id, [marketer], "campaign"
    on_duty = _on_duty(session)
    if on_duty is not None:
        return on_duty.id, [on_duty], "duty"
    return None, list(members.members_with_role(session, role=Role.marketer.value)), "all"


def _on_duty(session: Session) -> Member | None:
    member_id = insights.duty_member_id(session)
    member = session.get(Member, member_id) if member_id else None
    return member if member is not None and member.role in MARKETING else None


# ---------------------------------------------------------------- the card


def _status_line(session: Session, insight: Insight, tz: str | None) -> str:
    who = member_name(session, insight.marketer_id)
    if insight.status == InsightStatus.closed:
        return text_for(
            "insight_status_closed", who=who, at=when(insight.closed_at or insight.created_at, tz)
        )
    if insight.status == InsightStatus.claimed:
        return text_for("insight_status_claimed", who=who)
    return text_for("insight_status_open", who=who if insight.marketer_id else None)


def insight_card(
    session: Session, insight: Insight, *, for_marketing: bool, tz: str | None = None
) -> Card:
    """The insight with its lead, campaign, tags and state (times in `tz`); for marketing,
    Claim and Answer while it is open."""
    lead = session.get(Lead, insight.lead_id) if insight.lead_id else None
    campaign = session.get(Campaign, insight.campaign_id) if insight.campaign_id else None
    fields = [
        Fact(label, value)
        for label, value in (
            (text_for("insight_label_lead"), text_for("insight_lead", lead=lead) if lead else ""),
            (text_for("insight_label_campaign"), campaign.name if campaign else ""),
            (text_for("insight_label_tags"), ", ".join(insight.tags or [])),
            (text_for("insight_label_status"), _status_line(session, insight, tz)),
        )
        if value
    ]
    if insight.answer:
        fields.append(Fact(text_for("insight_label_answer"), insight.answer))
    item = content.get(session, content_id=insight.content_id) if insight.content_id else None
    if item is not None:
        fields.append(content_field(item))
    buttons: tuple[Button, ...] = ()
    if for_marketing and insight.status != InsightStatus.closed:
        value = f"insight_id={insight.id}"
        buttons = (
            Button(text_for("insight_button_answer"), "insight.answer", value, Style.primary),
        )
        if insight.status == InsightStatus.open:
            buttons = (Button(text_for("insight_button_claim"), "insight.claim", value), *buttons)
    return Card(
        title=text_for(
            "insight_title", kind=insight.kind, author=member_name(session, insight.author_id)
        ),
        text=insight.text,
        fields=tuple(fields),
        context=text_for("insight_context", insight_id=insight.id, at=when(insight.created_at, tz)),
        buttons=buttons,
    )


# ---------------------------------------------------------------- claim and answer


def _actionable(
    ctx: Context, interaction: Interaction, *, answering: bool
) -> Insight | list[Effect]:
    """The insight a marketer acts on, or the private answer that says why they cannot:
    not marketing, unknown, already closed, or claimed by someone else."""
    refused = refuse_unless(
        interaction.actor, Role.marketer, action=text_for("insight_action_answer")
    )
    if refused:
        return refused
    raw = interaction.arg("insight_id")
    insight = insights.get(ctx.session, insight_id=int(raw)) if raw.isdigit() else None
    if insight is None:
        return private(text_for("insight_not_found"))
    return _still_open(ctx, interaction, insight, answering=answering)


def _still_open(
    ctx: Context, interaction: Interaction, insight: Insight, *, answering: bool
) -> Insight | list[Effect]:
    """`insight` while this marketer may still act on it; an admin may answer one that
    someone else claimed, nobody may claim it from them."""
    who = member_name(ctx.session, insight.marketer_id)
    tz = interaction.actor.timezone
    if insight.status == InsightStatus.closed:
        at = when(insight.closed_at or ctx.now, tz)
        return private(text_for("insight_already_closed", who=who, at=at))
    taken = insight.status == InsightStatus.claimed and insight.marketer_id != interaction.actor.id
    admin = interaction.actor.role == Role.admin
    if taken and not (answering and admin):
        at = when(insight.claimed_at or ctx.now, tz)
        return private(text_for("insight_claimed_by", who=who, at=at))
    return insight


def claim(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = _actionable(ctx, interaction, answering=False)
    if isinstance(found, list):
        return found
    insight = found
    tz = interaction.actor.timezone
    if insight.status == InsightStatus.claimed:  # by this marketer already
        return [Reply(_claimed_card(ctx, insight, tz, already=True))]
    if not insights.claim(
        ctx.session, insight=insight, marketer_id=interaction.actor.id or 0, now=ctx.now
    ):
        raced = _still_open(ctx, interaction, insight, answering=False)
        if isinstance(raced, list):
            return raced
        return [Reply(_claimed_card(ctx, insight, tz, already=True))]
    effects: list[Effect] = [Reply(_claimed_card(ctx, insight, tz, already=False))]
    author = ctx.session.get(Member, insight.author_id)
    if author is not None and author.id != interaction.actor.id:
        effects.append(
            Notify(
                insight.author_id,
                Card(
                    title=text_for("insight_picked_up_title", who=interaction.actor.name),
                    text=insight.text,
                    context=text_for(
                        "insight_context",
                        insight_id=insight.id,
                        at=when(insight.created_at, author.timezone),
                    ),
                ),
                key=f"insight:{insight.id}:claimed",
            )
        )
    return effects


def _claimed_card(ctx: Context, insight: Insight, tz: str | None, *, already: bool) -> Card:
    card = insight_card(ctx.session, insight, for_marketing=True, tz=tz)
    note = text_for("insight_claimed_already" if already else "insight_claimed_now")
    return Card(
        title=card.title,
        text=f"{note}\n{card.text}",
        fields=card.fields,
        context=card.context,
        buttons=card.buttons,
    )


def open_answer(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = _actionable(ctx, interaction, answering=True)
    if isinstance(found, list):
        return found
    insight = found
    words = " ".join([insight.text, *(insight.tags or [])])
    matches = content.search(ctx.session, words=words, limit=SUGGESTIONS)
    inputs = [
        Input(
            "answer", text_for("insight_answer_label"), InputKind.multiline, max_length=ANSWER_LIMIT
        )
    ]
    if matches:
        inputs.append(
            Input(
                "content",
                text_for("insight_content_label"),
                InputKind.select,
                tuple(Option(str(m.id), m.title) for m in matches),
                required=False,
            )
        )
    inputs += [
        Input(
            "new_title", text_for("insight_new_title_label"), required=False, max_length=TITLE_LIMIT
        ),
        Input(
            "new_link",
            text_for("insight_new_link_label"),
            required=False,
            max_length=LINK_LIMIT,
            placeholder="https://",
        ),
    ]
    form = Form(
        name="insight.answer",
        title=text_for("insight_answer_form_title"),
        intro=text_for(
            "insight_answer_form_intro",
            author=member_name(ctx.session, insight.author_id),
            text=insight.text,
            matches=len(matches),
        ),
        inputs=tuple(inputs),
        submit_label=text_for("insight_button_close"),
        state={"insight_id": str(insight.id), "nonce": nonce()},
    )
    return [ShowForm(form)]


def _linked_content(
    ctx: Context, interaction: Interaction, insight: Insight
) -> int | dict[str, str] | None:
    """The content the answer links: picked, newly registered (made for this insight, so
    it carries the insight's words and tags), none, or the form errors."""
    picked = interaction.value("content")
    title = " ".join(interaction.value("new_title").split())
    link = interaction.value("new_link")
    if picked:
        if title or link:
            return {"new_link": text_for("insight_one_content")}
        item = content.get(ctx.session, content_id=int(picked)) if picked.isdigit() else None
        return item.id if item is not None else {"content": text_for("insight_pick_content")}
    if not title and not link:
        return None
    normal, errors = new_item_errors(
        ctx.session, title=title, link=link, title_input="new_title", link_input="new_link"
    )
    if errors:
        return errors
    item = content.add(
        ctx.session,
        title=title,
        link=normal,
        description=insight.text,
        tags=insight.tags or [],
        stage="",
        added_by=interaction.actor.id,
        now=ctx.now,
    )
    return item.id


def submit_answer(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = _actionable(ctx, interaction, answering=True)
    if isinstance(found, list):
        return found
    insight = found
    answer = interaction.value("answer")
    if not answer:
        return [FormErrors({"answer": text_for("insight_answer_empty")})]
    if len(answer) > ANSWER_LIMIT:
        return [FormErrors({"answer": text_for("too_long", limit=ANSWER_LIMIT)})]
    held = tone.first_flag(ctx.session, {"answer": answer})
    if held:
        return [FormErrors(held)]
    linked = _linked_content(ctx, interaction, insight)
    if isinstance(linked, dict):
        return [FormErrors(linked)]
    if not insights.close(
        ctx.session,
        insight=insight,
        marketer_id=interaction.actor.id or 0,
        answer=answer,
        content_id=linked,
        now=ctx.now,
        override=interaction.actor.role == Role.admin,
    ):
        ctx.session.rollback()  # the content registered for it, too
        raced = _still_open(ctx, interaction, insight, answering=True)
        return raced if isinstance(raced, list) else private(text_for("insight_not_found"))
    return _loop_closed(ctx, interaction, insight)


def _loop_closed(ctx: Context, interaction: Interaction, insight: Insight) -> list[Effect]:
    """The rep hears the answer (and gets the content link); the channel sees it is done."""
    author = ctx.session.get(Member, insight.author_id)
    card = insight_card(
        ctx.session, insight, for_marketing=False, tz=author.timezone if author else None
    )
    rep = Card(
        title=text_for("insight_answered_title", who=interaction.actor.name, kind=insight.kind),
        text=insight.text,
        fields=card.fields,
        context=text_for("insight_loop_closed", insight_id=insight.id),
    )
    effects: list[Effect] = []
    if insight.author_id != interaction.actor.id:
        effects.append(Notify(insight.author_id, rep, key=f"insight:{insight.id}:closed"))
    target = ctx.channel("insights")
    if target:
        done = insight_card(ctx.session, insight, for_marketing=False, tz=ctx.company.tz)
        effects.append(Post(target, done, key=f"insight:{insight.id}:answer-posted"))
    effects += private(
        text_for(
            "insight_answer_sent",
            rep=member_name(ctx.session, insight.author_id),
            content=bool(insight.content_id),
        )
    )
    return effects


# ---------------------------------------------------------------- lists and duty


def list_insights(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`insights`: for marketing, what waits for them; for anyone else, what they raised
    (and anything assigned to them) that is still open."""
    actor = interaction.actor
    marketing = actor.role in MARKETING
    if marketing:
        found = list(insights.waiting_for_marketing(ctx.session, member_id=actor.id or 0))
    else:
        found = list(insights.open_of(ctx.session, member_id=actor.id or 0))
    if not found:
        return private(text_for("insight_none_open", marketing=marketing))
    head = Card(
        title=text_for("insight_list_title", count=len(found), marketing=marketing),
        context=text_for("insight_list_more", shown=LISTED) if len(found) > LISTED else "",
    )
    return [
        Reply(head),
        *(
            Reply(insight_card(ctx.session, insight, for_marketing=marketing, tz=actor.timezone))
            for insight in found[:LISTED]
        ),
    ]


def duty(ctx: Context, interaction: Interaction, rest: str) -> list[Effect]:
    """`insight duty`: the marketer takes insights duty; `insight duty off` hands it back."""
    refused = refuse_unless(
        interaction.actor, Role.marketer, action=text_for("insight_action_duty")
    )
    if refused:
        return refused
    before = _on_duty(ctx.session)
    if rest in ("off", "stop", "end"):
        if before is None or before.id != interaction.actor.id:
            return private(text_for("insight_duty_not_you", who=before.name if before else None))
        insights.set_duty(ctx.session, member_id=None)
        return private(text_for("insight_duty_off"))
    if rest:
        return private(text_for("insight_duty_usage"))
    insights.set_duty(ctx.session, member_id=interaction.actor.id)
    previous = before.name if before is not None and before.id != interaction.actor.id else None
    return private(text_for("insight_duty_on", before=previous))
