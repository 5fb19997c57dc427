"""The handoff card's four actions: Accept, Not a fit, Need info, Log attempt."""

from __future__ import annotations

from bot.core.business_time import Calendar
from bot.core.effects import Effect, FormErrors, Notify, Reply, ShowForm, UpdateCards
from bot.core.interaction import Interaction
from bot.core.messages import Form, Input, InputKind, Option
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers import tone
from handlers.cards import (
    ATTEMPT_CHANNELS,
    ATTEMPT_OUTCOMES,
    HANDOFF,
    VIEW,
    lead_card,
    lead_card_for,
    lead_card_of,
)
from handlers.clocks import lines_of
from handlers.common import (
    load_lead,
    may_act_on,
    nonce,
    private,
    refuse_not_owner,
    unknown_lead,
)
from storage import clocks as clock_store
from storage import definitions, places, verdicts
from storage import leads as stored_leads
from storage import members as stored_members
from storage.calendars import Calendars, remember_calendars
from storage.models import Campaign, EventKind, Lead, LeadState, Member

COMMENT_LIMIT = 1000
SHOWN_LEADS = 10  # cards re-posted by /leads


def register(router: Router) -> None:
    router.action(VIEW, view)
    router.action("lead.accept", accept)
    router.action("lead.not_a_fit", open_not_a_fit)
    router.form("lead.not_a_fit", submit_not_a_fit)
    router.action("lead.log_attempt", open_log_attempt)
    router.form("lead.log_attempt", submit_log_attempt)
    router.command("leads", my_leads, summary=text_for("help_leads"))


def refresh(ctx: Context, lead: Lead) -> UpdateCards:
    return UpdateCards(lead.id or 0, HANDOFF, lead_card(ctx.session, lead, ctx.now, ctx.company))


def checked_lead(ctx: Context, interaction: Interaction) -> Lead | list[Effect]:
    """The lead acted on, or the private answer that explains why not."""
    lead = load_lead(ctx.session, interaction.arg("lead_id"))
    if lead is None:
        return unknown_lead()
    if not may_act_on(ctx.session, lead, interaction.actor):
        return refuse_not_owner(ctx.session, lead)
    if lead.state == LeadState.not_a_fit:
        last = stored_leads.events_of(ctx.session, lead_id=lead.id or 0, kind=EventKind.not_a_fit)
        who = ctx.session.get(Member, last[-1].member_id) if last else None
        at = when(last[-1].at, interaction.actor.timezone) if last else ""
        return private(
            text_for("already_not_a_fit", lead=lead.name, who=who.name if who else "", at=at)
        )
    return lead


def view(ctx: Context, interaction: Interaction) -> list[Effect]:
    """The handoff card as the one who asks should see it (a Teams card refreshing itself):
    buttons for whoever may act on the lead, the state only for anyone else."""
    lead = load_lead(ctx.session, interaction.arg("lead_id"))
    if lead is None:
        return unknown_lead()
    where = interaction.where
    shown_here = places.location_by_message(
        ctx.session, platform=where.platform, channel=where.channel, message_id=where.message_id
    )
    if not may_act_on(ctx.session, lead, interaction.actor) and (
        shown_here is None or shown_here.lead_id != lead.id
    ):
        # Only a card that is really where they look is drawn for anyone else: a made-up
        # lead id shows nothing of the lead.
        return refuse_not_owner(ctx.session, lead)
    return [Reply(lead_card_for(ctx.session, lead, interaction.actor, ctx.now, ctx.company))]


def accept(ctx: Context, interaction: Interaction) -> list[Effect]:
    raw, actor_id = interaction.arg("lead_id"), interaction.actor.id
    if raw.isdigit() and actor_id is not None:
        # The usual press (the owner or their manager, on a lead still handed off) in a
        # few plain statements; anything else changed nothing and is answered below.
        done = verdicts.accept(ctx.session, lead_id=int(raw), actor_id=actor_id, now=ctx.now)
        if done is not None:
            return [accepted(ctx, done, actor_id)]
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    if not stored_leads.move_lead(
        ctx.session, lead=lead, to=LeadState.accepted, allowed_from=[LeadState.handed_off]
    ):
        return private(text_for("already_accepted", lead=lead.name))
    remember_calendars(ctx.session, ctx.company)  # read once for the clocks and the card
    stored_leads.record_verdict(
        ctx.session, lead=lead, member_id=interaction.actor.id, now=ctx.now, accepted=True
    )
    clock_store.on_accepted(ctx.session, lead, ctx.now, ctx.company)
    return [refresh(ctx, lead)]


def accepted(ctx: Context, done: verdicts.Accepted, actor_id: int) -> UpdateCards:
    """What follows an accepted lead (`verdicts.accept`), as `accept` below does it with
    the ORM: the verdict recorded, the clocks closed and started, and the card rendered
    from the rows read for them (each read once, only the columns needed)."""
    session, lead = ctx.session, done.lead
    lead_id = lead.id or 0
    verdicts.add_event(
        session, lead_id=lead_id, kind=EventKind.accepted, member_id=actor_id, at=ctx.now
    )
    clocks = verdicts.open_clocks(session, lead_id=lead_id)
    events = verdicts.events_of(session, lead_id=lead_id)
    named = {e.member_id for e in events} | {
        e.data.get("marketer_id") for e in events if e.kind == EventKind.info_requested
    }
    ids = {i for i in named if isinstance(i, int)} | {c.owner_id for c in clocks}
    members, away = verdicts.members(
        session, ids=ids | ({lead.owner_id} if lead.owner_id else set())
    )
    calendars = Calendars(session, ctx.company, away=away, holidays=verdicts.holidays(session))

    def calendar_of(member_id: int) -> Calendar | None:
        member = members.get(member_id)
        return calendars.of(member) if member is not None else None

    def owner_of(member_id: int) -> tuple[str | None, Calendar] | None:
        member = members.get(member_id)
        return (member.timezone, calendars.of(member)) if member is not None else None

    def name_of(member_id: int | None) -> str:
        member = members.get(member_id) if member_id else None
        return member.name if member is not None else "someone"

    still_open = clock_store.accepted(session, lead, clocks, calendar_of, ctx.now)
    card = lead_card_of(
        lead,
        owner=members.get(lead.owner_id) if lead.owner_id else None,
        campaign=done.campaign,
        version=done.version if done.version is not None else "?",
        events=events,
        sla_lines=lines_of(still_open, owner_of, ctx.now, ctx.company),
        name_of=name_of,
    )
    return UpdateCards(lead_id, HANDOFF, card)


def open_not_a_fit(ctx: Context, interaction: Interaction) -> list[Effect]:
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    definition, criteria = definitions.current_definition(ctx.session)
    form = Form(
        name="lead.not_a_fit",
        title=text_for("not_a_fit_form_title"),
        intro=text_for("not_a_fit_form_intro", lead=lead.name, version=definition.version),
        inputs=(
            Input(
                "criteria",
                text_for("not_a_fit_criteria_label"),
                InputKind.multiselect,
                tuple(Option(c.key, c.text) for c in criteria),
            ),
            Input(
                "comment",
                text_for("not_a_fit_comment_label"),
                InputKind.multiline,
                required=False,
                max_length=COMMENT_LIMIT,
            ),
        ),
        submit_label=text_for("button_submit"),
        state={"lead_id": str(lead.id), "nonce": nonce()},
    )
    return [ShowForm(form)]


def submit_not_a_fit(ctx: Context, interaction: Interaction) -> list[Effect]:
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    definition, criteria = definitions.current_definition(ctx.session)
    texts = {c.key: c.text for c in criteria}
    picked = interaction.choices("criteria")
    comment = interaction.value("comment")
    if not picked or any(key not in texts for key in picked):
        return [FormErrors({"criteria": text_for("not_a_fit_pick_criteria")})]
    if len(comment) > COMMENT_LIMIT:
        return [FormErrors({"comment": text_for("too_long", limit=COMMENT_LIMIT)})]
    held = tone.first_flag(ctx.session, {"comment": comment})
    if held:
        return [FormErrors(held)]
    if not stored_leads.move_lead(
        ctx.session,
        lead=lead,
        to=LeadState.not_a_fit,
        allowed_from=[LeadState.handed_off, LeadState.accepted],
    ):
        return private(text_for("already_not_a_fit", lead=lead.name, who="", at=""))
    remember_calendars(ctx.session, ctx.company)  # read once for the clocks and the card
    stored_leads.record_verdict(
        ctx.session,
        lead=lead,
        member_id=interaction.actor.id,
        now=ctx.now,
        accepted=False,
        reasons=[(key, texts[key]) for key in picked],
        definition_version=definition.version,
        comment=comment,
    )
    clock_store.on_not_a_fit(ctx.session, lead, ctx.now, ctx.company)
    return [refresh(ctx, lead)]


def open_log_attempt(ctx: Context, interaction: Interaction) -> list[Effect]:
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    form = Form(
        name="lead.log_attempt",
        title=text_for("attempt_form_title"),
        intro=text_for("attempt_form_intro", lead=lead.name),
        inputs=(
            Input(
                "channel",
                text_for("attempt_channel_label"),
                InputKind.select,
                tuple(Option(k, v) for k, v in ATTEMPT_CHANNELS.items()),
            ),
            Input(
                "outcome",
                text_for("attempt_outcome_label"),
                InputKind.select,
                tuple(Option(k, v) for k, v in ATTEMPT_OUTCOMES.items()),
            ),
            Input(
                "note",
                text_for("attempt_note_label"),
                InputKind.text,
                required=False,
                max_length=COMMENT_LIMIT,
            ),
        ),
        submit_label=text_for("button_submit"),
        state={"lead_id": str(lead.id), "nonce": nonce()},
    )
    return [ShowForm(form)]


def submit_log_attempt(ctx: Context, interaction: Interaction) -> list[Effect]:
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    channel, outcome = interaction.value("channel"), interaction.value("outcome")
    note = interaction.value("note")
    errors = {}
    if channel not in ATTEMPT_CHANNELS:
        errors["channel"] = text_for("attempt_pick_channel")
    if outcome not in ATTEMPT_OUTCOMES:
        errors["outcome"] = text_for("attempt_pick_outcome")
    if len(note) > COMMENT_LIMIT:
        errors["note"] = text_for("too_long", limit=COMMENT_LIMIT)
    if errors:
        return [FormErrors(errors)]
    remember_calendars(ctx.session, ctx.company)  # read once for the clocks and the card
    stored_leads.record_attempt(
        ctx.session,
        lead=lead,
        member_id=interaction.actor.id,
        now=ctx.now,
        channel=channel,
        outcome=outcome,
        note=note,
    )
    clock_store.on_attempt(ctx.session, lead, ctx.now, ctx.company, outcome)
    return [refresh(ctx, lead)]


def my_leads(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`/leads`: the leads that wait for me, each as its card (re-posted privately), the
    newest `SHOWN_LEADS`; the rest are counted."""
    me = interaction.actor.id or 0
    leads = stored_leads.open_leads_of(ctx.session, member_id=me, limit=SHOWN_LEADS)
    if not leads:
        return private(text_for("no_open_leads"))
    effects: list[Effect] = [
        Notify(
            me,
            lead_card(ctx.session, lead, ctx.now, ctx.company),
            lead_id=lead.id,
            purpose=HANDOFF,
        )
        for lead in leads
    ]
    total = stored_leads.count_open_leads(ctx.session, member_id=me)
    if total > len(leads):
        effects += private(text_for("more_open_leads", shown=len(leads), total=total))
    return effects


def campaign_marketer(ctx: Context, lead: Lead) -> Member | None:
    """The campaign's marketer, else the first member with the marketer role."""
    campaign = ctx.session.get(Campaign, lead.campaign_id) if lead.campaign_id else None
    if campaign is not None and campaign.marketer_id is not None:
        return ctx.session.get(Member, campaign.marketer_id)
    marketers = stored_members.members_with_role(ctx.session, role="marketer")
    return marketers[0] if marketers else None
