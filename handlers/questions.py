"""Need info: a rep's question goes to the campaign's marketer; the answer comes back."""

from __future__ import annotations

from bot.core.effects import Effect, FormErrors, Notify, ShowForm, UpdateCards
from bot.core.interaction import Interaction
from bot.core.messages import Card, Fact, Form, Input, InputKind
from bot.core.router import Context, Router
from bot.core.text import text_for
from handlers import tone
from handlers.cards import member_name, question_card, question_purpose
from handlers.common import load_lead, nonce, private, unknown_lead
from handlers.leads import campaign_marketer, checked_lead, refresh
from storage import clocks as clock_store
from storage import leads
from storage.models import EventKind, Lead, LeadEvent, Member, Role

TEXT_LIMIT = 2000


def register(router: Router) -> None:
    router.action("lead.need_info", open_question)
    router.form("lead.need_info", submit_question)
    router.action("question.answer", open_answer)
    router.form("question.answer", submit_answer)


def open_question(ctx: Context, interaction: Interaction) -> list[Effect]:
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    marketer = campaign_marketer(ctx, lead)
    if marketer is None:
        return private(text_for("no_marketer"))
    form = Form(
        name="lead.need_info",
        title=text_for("question_form_title"),
        intro=text_for("question_form_intro", lead=lead.name, marketer=marketer.name),
        inputs=(
            Input(
                "question", text_for("question_label"), InputKind.multiline, max_length=TEXT_LIMIT
            ),
        ),
        submit_label=text_for("button_send"),
        state={"lead_id": str(lead.id), "nonce": nonce()},
    )
    return [ShowForm(form)]


def submit_question(ctx: Context, interaction: Interaction) -> list[Effect]:
    lead = checked_lead(ctx, interaction)
    if isinstance(lead, list):
        return lead
    question = interaction.value("question")
    if not question:
        return [FormErrors({"question": text_for("question_empty")})]
    if len(question) > TEXT_LIMIT:
        return [FormErrors({"question": text_for("too_long", limit=TEXT_LIMIT)})]
    held = tone.first_flag(ctx.session, {"question": question})
    if held:
        return [FormErrors(held)]
    marketer = campaign_marketer(ctx, lead)
    if marketer is None:
        return private(text_for("no_marketer"))
    question_id = interaction.args.get("nonce") or nonce()
    asked = leads.add_event(
        ctx.session,
        lead_id=lead.id or 0,
        kind=EventKind.info_requested,
        member_id=interaction.actor.id,
        now=ctx.now,
        data={"question_id": question_id, "question": question, "marketer_id": marketer.id},
    )
    clock_store.on_question(ctx.session, lead, marketer.id or 0, question_id, ctx.now)
    return [
        Notify(
            marketer.id or 0,
            question_card(ctx.session, lead, asked, None),
            lead_id=lead.id,
            purpose=question_purpose(question_id),
        ),
        refresh(ctx, lead),
        *private(text_for("question_sent", marketer=marketer.name)),
    ]


def _unanswered(ctx: Context, interaction: Interaction) -> tuple[Lead, LeadEvent] | list[Effect]:
    """The lead and the still-open question named by `question=<lead id>:<question id>`,
    or the private answer that explains why it cannot be answered by this member."""
    lead_part, _, question_id = interaction.arg("question").partition(":")
    lead = load_lead(ctx.session, lead_part)
    if lead is None or not question_id:
        return unknown_lead()
    asked = answered = None
    for event in leads.events_of(ctx.session, lead_id=lead.id or 0):
        if event.data.get("question_id") != question_id:
            continue
        if event.kind == EventKind.info_requested:
            asked = event
        elif event.kind == EventKind.info_answered:
            answered = event
    if asked is None:
        return unknown_lead()
    actor = interaction.actor
    if actor.id != asked.data.get("marketer_id") and actor.role != Role.admin:
        marketer = ctx.session.get(Member, asked.data.get("marketer_id"))
        return private(text_for("question_not_yours", marketer=marketer.name if marketer else "?"))
    if answered is not None:
        return private(text_for("question_already_answered"))
    return lead, asked


def open_answer(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = _unanswered(ctx, interaction)
    if isinstance(found, list):
        return found
    lead, asked = found
    form = Form(
        name="question.answer",
        title=text_for("answer_form_title"),
        intro=text_for("answer_form_intro", question=asked.data["question"], lead=lead.name),
        inputs=(
            Input("answer", text_for("answer_label"), InputKind.multiline, max_length=TEXT_LIMIT),
        ),
        submit_label=text_for("button_send"),
        state={"question": interaction.arg("question"), "nonce": nonce()},
    )
    return [ShowForm(form)]


def submit_answer(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = _unanswered(ctx, interaction)
    if isinstance(found, list):
        return found
    lead, asked = found
    text = interaction.value("answer")
    if not text:
        return [FormErrors({"answer": text_for("answer_empty")})]
    if len(text) > TEXT_LIMIT:
        return [FormErrors({"answer": text_for("too_long", limit=TEXT_LIMIT)})]
    held = tone.first_flag(ctx.session, {"answer": text})
    if held:
        return [FormErrors(held)]
    answered = leads.add_event(
        ctx.session,
        lead_id=lead.id or 0,
        kind=EventKind.info_answered,
        member_id=interaction.actor.id,
        now=ctx.now,
        data={"question_id": asked.data["question_id"], "answer": text},
    )
    clock_store.on_answer(ctx.session, lead, asked.data["question_id"], ctx.now, ctx.company)
    rep_id = asked.member_id or lead.owner_id or 0
    purpose = question_purpose(asked.data["question_id"])
    return [
        UpdateCards(lead.id or 0, purpose, question_card(ctx.session, lead, asked, answered)),
        refresh(ctx, lead),
        Notify(
            rep_id,
            _answer_card(ctx, lead, asked, answered),
            lead_id=lead.id,
            in_thread=True,
        ),
        *private(text_for("answer_sent", rep=member_name(ctx.session, rep_id, "the rep"))),
    ]


def _answer_card(ctx: Context, lead: Lead, asked: LeadEvent, answered: LeadEvent) -> Card:
    return Card(
        title=text_for(
            "answer_title",
            marketer=member_name(ctx.session, answered.member_id, "the rep"),
            lead=lead.name,
        ),
        fields=(
            Fact(text_for("label_question"), asked.data["question"]),
            Fact(text_for("label_answer"), answered.data["answer"]),
        ),
        context=text_for("lead_context_short", lead_id=lead.id),
    )
