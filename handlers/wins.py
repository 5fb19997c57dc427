"""Wins (`/win`): a rep's story, posted in the wins channel crediting both the rep and the
campaign's marketer. Praise in public."""

from __future__ import annotations

from bot.core.effects import Effect, FormErrors, Notify, Post, ShowForm
from bot.core.interaction import Interaction
from bot.core.messages import Card, Form, Input, InputKind, Option
from bot.core.router import Context, Router
from bot.core.text import text_for
from handlers import tone
from handlers.cards import member_name
from handlers.common import load_lead, may_act_on, nonce, private
from handlers.form_fields import campaign_choice, campaign_options
from storage import wins
from storage.models import Campaign, Lead, LeadState, Member, Win

STORY_LIMIT = 1500


def register(router: Router) -> None:
    router.command("win", win_command, summary=text_for("help_win"), usage="win [STORY]")
    router.form("win.new", submit_win)


def win_command(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`win` opens the form; text after it pre-fills the story."""
    story = interaction.text.strip()
    leads = wins.accepted_leads_of(ctx.session, member_id=interaction.actor.id or 0)
    inputs = [
        Input(
            "story",
            text_for("win_story_label"),
            InputKind.multiline,
            max_length=STORY_LIMIT,
            initial=(story[:STORY_LIMIT],) if story else (),
        )
    ]
    if leads:
        inputs.append(
            Input(
                "lead",
                text_for("win_lead_label"),
                InputKind.select,
                tuple(Option(str(lead.id), _lead_label(lead)) for lead in leads),
                required=False,
            )
        )
    campaigns = campaign_options(ctx.session)
    if campaigns:
        inputs.append(
            Input(
                "campaign",
                text_for("win_campaign_label"),
                InputKind.select,
                campaigns,
                required=False,
            )
        )
    form = Form(
        name="win.new",
        title=text_for("win_form_title"),
        intro=text_for("win_form_intro"),
        inputs=tuple(inputs),
        submit_label=text_for("win_button_share"),
        state={"nonce": nonce()},
    )
    return [ShowForm(form)]


def _lead_label(lead: Lead) -> str:
    return f"{lead.name} · {lead.company}" if lead.company else lead.name


def _chosen_lead(ctx: Context, interaction: Interaction) -> Lead | str | None:
    """The lead the win is about (one of the rep's accepted leads), None, or why not."""
    raw = interaction.value("lead")
    if not raw:
        return None
    lead = load_lead(ctx.session, raw)
    if lead is None or not may_act_on(ctx.session, lead, interaction.actor):
        return text_for("win_lead_not_yours")
    if lead.state != LeadState.accepted:
        return text_for("win_lead_not_accepted", lead=lead.name)
    return lead


def submit_win(ctx: Context, interaction: Interaction) -> list[Effect]:
    story = interaction.value("story")
    errors: dict[str, str] = {}
    if not story:
        errors["story"] = text_for("win_story_empty")
    elif len(story) > STORY_LIMIT:
        errors["story"] = text_for("too_long", limit=STORY_LIMIT)
    else:
        flag = tone.check(ctx.session, story)
        if flag is not None and flag.kind != "shouting":  # capitals are fine in a win
            errors["story"] = tone.held_back(flag)
    lead = _chosen_lead(ctx, interaction)
    if isinstance(lead, str):
        errors["lead"] = lead
    campaign = campaign_choice(ctx.session, interaction.value("campaign"))
    if isinstance(campaign, str):
        errors["campaign"] = campaign
    if errors or isinstance(lead, str) or isinstance(campaign, str):
        return [FormErrors(errors)]
    if campaign is None and lead is not None and lead.campaign_id is not None:
        campaign = ctx.session.get(Campaign, lead.campaign_id)
    marketer = (
        ctx.session.get(Member, campaign.marketer_id)
        if campaign is not None and campaign.marketer_id
        else None
    )
    win = wins.add(
        ctx.session,
        author_id=interaction.actor.id or 0,
        story=story,
        lead_id=lead.id if lead else None,
        campaign_id=campaign.id if campaign else None,
        marketer_id=marketer.id if marketer else None,
        now=ctx.now,
    )
    return _share(ctx, interaction, win, lead, campaign, marketer)


def win_card(ctx: Context, win: Win, lead: Lead | None, campaign: Campaign | None) -> Card:
    """The public card: who won what, from whose campaign, and the story."""
    return Card(
        title=text_for(
            "win_headline",
            rep=member_name(ctx.session, win.author_id),
            won=(lead.company or lead.name) if lead else None,
            marketer=member_name(ctx.session, win.marketer_id) if win.marketer_id else None,
            campaign=campaign.name if campaign else None,
        ),
        text=win.story,
        context=text_for("win_context", win_id=win.id),
    )


def _share(
    ctx: Context,
    interaction: Interaction,
    win: Win,
    lead: Lead | None,
    campaign: Campaign | None,
    marketer: Member | None,
) -> list[Effect]:
    """Post in the wins channel (or tell the author how to get one) and thank the marketer."""
    card = win_card(ctx, win, lead, campaign)
    target = ctx.channel("wins")
    effects: list[Effect] = []
    if target:
        effects.append(Post(target, card, key=f"win:{win.id}"))
    if marketer is not None and marketer.id != interaction.actor.id:
        credit = Card(
            title=text_for(
                "win_credit_title",
                rep=interaction.actor.name,
                campaign=campaign.name if campaign else "",
            ),
            text=win.story,
            context=card.title,
        )
        effects.append(Notify(marketer.id or 0, credit, key=f"win:{win.id}:marketer"))
    effects += private(
        text_for(
            "win_shared" if target else "win_no_channel",
            marketer=marketer.name if marketer else None,
            platform=interaction.where.platform,
        )
    )
    return effects
