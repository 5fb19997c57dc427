"""Field feedback (`/feedback`): a marketer asks the field, reps answer in their own time.

Non-blocking: nothing waits on a request, and it shares no table or code path with
approvals. The requester is not messaged per answer; `feedback list` and `feedback ID`
show the answers so far, and the summary arrives at the deadline (see digests.feedback).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from bot.core.effects import Effect, FormErrors, Notify, Reply, ShowForm
from bot.core.interaction import Interaction, Person
from bot.core.messages import Button, Card, Fact, Form, Input, InputKind, Option
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers import feedback_cards, tone
from handlers.common import nonce, private, refuse_unless
from storage import campaigns as stored_campaigns
from storage import feedback as records
from storage.calendars import calendar_of
from storage.models import (
    Campaign,
    FeedbackAbout,
    FeedbackQuestion,
    FeedbackRequest,
    Member,
    QuestionKind,
    Role,
)

SUBJECT_LIMIT = 200
QUESTION_LIMIT = 300
LINK_LIMIT = 1000
OPTION_LIMIT = 75  # Slack's limit for an option's text
OPTIONS_MIN, OPTIONS_MAX = 2, 10
OPTIONS_FIELD_LIMIT = OPTIONS_MAX * (OPTION_LIMIT + 2)
ANSWER_LIMIT = 2000
QUESTIONS = 3
MAX_DAYS = 60
DEFAULT_DAYS = 7
CAMPAIGN_CHOICES = 100  # Slack shows at most 100 options in a select
WAITING_SHOWN = 5


def register(router: Router) -> None:
    router.command(
        "feedback",
        command,
        summary=text_for("feedback_help"),
        usage="feedback [list | ID | close ID]",
    )
    router.form("feedback.request", submit_request)
    router.action("feedback.answer", open_answer)
    router.form("feedback.answer", submit_answer)
    router.action("feedback.summary", summary_button)
    router.action("feedback.close", close_button)


def command(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`feedback` opens the form; `list`, `ID` and `close ID` are the requester's views."""
    verb, _, rest = interaction.text.strip().partition(" ")
    verb, rest = verb.lower().lstrip("#"), rest.strip().lstrip("#")
    if not verb:
        return open_request(ctx, interaction)
    if verb == "list" and not rest:
        return list_requests(ctx, interaction)
    if verb == "close" and rest:
        return close(ctx, interaction, rest)
    if verb.isdigit() and not rest:
        return show_summary(ctx, interaction, verb)
    return private(text_for("feedback_usage"))


def _tz(ctx: Context, member: Person | Member | None) -> str:
    return (member.timezone if member else None) or ctx.company.tz


# ---------------------------------------------------------------- asking


def open_request(ctx: Context, interaction: Interaction) -> list[Effect]:
    refused = _refuse_non_marketer(ctx, interaction)
    if refused:
        return refused
    form = Form(
        name="feedback.request",
        title=text_for("feedback_form_title"),
        intro=text_for("feedback_form_intro"),
        inputs=_request_inputs(ctx, interaction.actor),
        submit_label=text_for("button_send"),
        state={"nonce": nonce()},
    )
    return [ShowForm(form)]


def _refuse_non_marketer(ctx: Context, interaction: Interaction) -> list[Effect] | None:
    """The refusal for anyone but marketers and admins, listing what waits for their answer."""
    refused = refuse_unless(interaction.actor, Role.marketer, action=text_for("feedback_action"))
    if refused is None:
        return None
    waiting = records.waiting_for(ctx.session, member_id=interaction.actor.id or 0, now=ctx.now)
    if not waiting:
        return refused
    why = " ".join(effect.card.text for effect in refused if isinstance(effect, Reply))
    tz = _tz(ctx, interaction.actor)
    shown = waiting[:WAITING_SHOWN]
    card = Card(
        text=why + "\n" + text_for("feedback_waiting_for_you", count=len(waiting)),
        fields=tuple(
            Fact(
                text_for("feedback_list_label", id=w.request_id, subject=w.subject),
                text_for(
                    "feedback_waiting_line",
                    requester=_name(ctx, w.requester_id),
                    deadline=when(w.deadline, tz),
                ),
            )
            for w in shown
        ),
        buttons=tuple(
            Button(
                text_for("feedback_answer_button", id=w.request_id),
                "feedback.answer",
                _value(w.request_id),
            )
            for w in shown
        ),
    )
    return [Reply(card)]


def _name(ctx: Context, member_id: int | None) -> str:
    member = ctx.session.get(Member, member_id) if member_id else None
    return member.name if member else "?"


def _value(request_id: int | None) -> str:
    return f"request={request_id}"


def _request_inputs(ctx: Context, actor: Person) -> tuple[Input, ...]:
    about = tuple(Option(a.value, text_for(f"feedback_about_{a.value}")) for a in FeedbackAbout)
    kinds = tuple(Option(k.value, text_for(f"feedback_kind_{k.value}")) for k in QuestionKind)
    inputs = [
        Input("about", text_for("feedback_about_label"), InputKind.select, about),
        Input(
            "subject",
            text_for("feedback_subject_label"),
            max_length=SUBJECT_LIMIT,
            placeholder=text_for("feedback_subject_placeholder"),
        ),
        Input(
            "link",
            text_for("feedback_link_label"),
            required=False,
            max_length=LINK_LIMIT,
            placeholder="https://",
        ),
    ]
    campaigns = stored_campaigns.all_campaigns(ctx.session)[:CAMPAIGN_CHOICES]
    if campaigns:
        inputs.append(
            Input(
                "campaign",
                text_for("feedback_campaign_label"),
                InputKind.select,
                tuple(Option(str(c.id), c.name) for c in campaigns),
                required=False,
            )
        )
    for n in range(1, QUESTIONS + 1):
        inputs += [
            Input(
                f"q{n}",
                text_for("feedback_question_label", n=n),
                InputKind.multiline,
                required=n == 1,
                max_length=QUESTION_LIMIT,
            ),
            Input(
                f"q{n}_kind",
                text_for("feedback_kind_label", n=n),
                InputKind.select,
                kinds,
                required=False,
                initial=(QuestionKind.text.value,),
            ),
            Input(
                f"q{n}_options",
                text_for("feedback_options_label", n=n),
                required=False,
                max_length=OPTIONS_FIELD_LIMIT,
                placeholder=text_for("feedback_options_placeholder"),
            ),
        ]
    today = ctx.now.astimezone(ZoneInfo(_tz(ctx, actor))).date()
    inputs += [
        Input("audience", text_for("feedback_audience_label"), InputKind.select, _audiences(ctx)),
        Input(
            "deadline",
            text_for("feedback_deadline_label"),
            InputKind.date,
            initial=((today + timedelta(days=DEFAULT_DAYS)).isoformat(),),
        ),
    ]
    return tuple(inputs)


def _audiences(ctx: Context) -> tuple[Option, ...]:
    reps = records.rep_count(ctx.session)
    options = [Option(records.ALL, text_for("feedback_audience_all", count=reps))]
    options += [
        Option(
            records.TEAM_PREFIX + team, text_for("feedback_audience_team", team=team, count=count)
        )
        for team, count in records.teams(ctx.session)
    ]
    options.append(Option(records.CAMPAIGN, text_for("feedback_audience_campaign")))
    return tuple(options)


@dataclass(frozen=True)
class Draft:
    """A request form that passed validation."""

    about: str
    subject: str
    link: str | None
    campaign: Campaign | None
    questions: tuple[records.NewQuestion, ...]
    audience: str
    deadline: datetime


def submit_request(ctx: Context, interaction: Interaction) -> list[Effect]:
    refused = refuse_unless(interaction.actor, Role.marketer, action=text_for("feedback_action"))
    if refused:
        return refused
    draft = _draft(ctx, interaction)
    if isinstance(draft, FormErrors):
        return [draft]
    held = tone.first_flag(ctx.session, _relayed_texts(draft))
    if held:
        return [FormErrors(held)]
    actor = interaction.actor
    campaign_id = draft.campaign.id if draft.campaign else None
    recipients = records.audience_members(
        ctx.session, audience=draft.audience, campaign_id=campaign_id, exclude=actor.id
    )
    if not recipients:
        return [FormErrors({"audience": _empty_audience(draft)})]
    request = records.create_request(
        ctx.session,
        requester_id=actor.id or 0,
        about=draft.about,
        subject=draft.subject,
        link=draft.link,
        campaign_id=campaign_id,
        audience=draft.audience,
        deadline=draft.deadline,
        remind_at=feedback_cards.remind_at(ctx.now, draft.deadline),
        questions=draft.questions,
        recipients=recipients,
        now=ctx.now,
    )
    questions = records.questions_of(ctx.session, request_id=request.id or 0)
    effects: list[Effect] = [
        Notify(
            member.id or 0,
            feedback_cards.ask_card(ctx.session, request, questions, _tz(ctx, member)),
            key=feedback_cards.ask_key(request.id or 0, member.id or 0),
            nudge=True,
        )
        for member in records.members(ctx.session, ids=recipients)
    ]
    effects.append(Reply(_sent_card(ctx, request, draft, len(recipients), actor)))
    return effects


def _sent_card(
    ctx: Context, request: FeedbackRequest, draft: Draft, count: int, actor: Person
) -> Card:
    audience = text_for(
        "feedback_audience_words",
        audience=draft.audience,
        team=draft.audience.removeprefix(records.TEAM_PREFIX),
        campaign=draft.campaign.name if draft.campaign else "",
    )
    return Card(
        title=text_for("feedback_sent_title", id=request.id),
        text=text_for(
            "feedback_sent",
            count=count,
            audience=audience,
            deadline=when(request.deadline, _tz(ctx, actor)),
            id=request.id,
        ),
        buttons=(
            Button(text_for("feedback_button_summary"), "feedback.summary", _value(request.id)),
        ),
    )


def _relayed_texts(draft: Draft) -> dict[str, str]:
    """What reps will read, by the input it came from (for the tone check)."""
    texts = {"subject": draft.subject}
    for n, question in enumerate(draft.questions, 1):
        texts[f"q{n}"] = question.text
        if question.options:
            texts[f"q{n}_options"] = ", ".join(question.options)
    return texts


def _empty_audience(draft: Draft) -> str:
    if draft.audience == records.CAMPAIGN and draft.campaign is not None:
        return text_for("feedback_audience_empty_campaign", campaign=draft.campaign.name)
    if draft.audience.startswith(records.TEAM_PREFIX):
        team = draft.audience.removeprefix(records.TEAM_PREFIX)
        return text_for("feedback_audience_empty_team", team=team)
    return text_for("feedback_audience_empty_all")


def _draft(ctx: Context, interaction: Interaction) -> Draft | FormErrors:
    """The submitted request, or every problem with it, each under its input's name."""
    errors: dict[str, str] = {}
    about = interaction.value("about")
    if about not in {a.value for a in FeedbackAbout}:
        errors["about"] = text_for("feedback_pick_about")
    subject = " ".join(interaction.value("subject").split())
    if not subject:
        errors["subject"] = text_for("feedback_subject_empty")
    elif len(subject) > SUBJECT_LIMIT:
        errors["subject"] = text_for("too_long", limit=SUBJECT_LIMIT)
    link = _link(interaction.value("link"), about, errors)
    campaign = _campaign(ctx, interaction.value("campaign"), errors)
    questions = _questions(interaction, errors)
    audience = _audience(ctx, interaction.value("audience"), errors)
    if campaign is None and "campaign" not in errors:
        _campaign_needed(ctx, about, audience, errors)
    deadline = _deadline(ctx, interaction, errors)
    if errors or deadline is None:
        return FormErrors(errors)
    return Draft(about, subject, link, campaign, questions, audience, deadline)


def _link(raw: str, about: str, errors: dict[str, str]) -> str | None:
    if not raw:
        if about == FeedbackAbout.asset:
            errors["link"] = text_for("feedback_link_needed")
        return None
    if len(raw) > LINK_LIMIT:
        errors["link"] = text_for("too_long", limit=LINK_LIMIT)
        return None
    parsed = urlparse(raw)
    if (
        parsed.scheme.lower() not in ("http", "https")
        or not parsed.netloc
        or any(c.isspace() for c in raw)
    ):
        errors["link"] = text_for("feedback_link_bad")
        return None
    return raw


def _campaign(ctx: Context, raw: str, errors: dict[str, str]) -> Campaign | None:
    """The chosen campaign, by id (the select) or by name (typed in Teams or the console)."""
    if not raw:
        return None
    found = ctx.session.get(Campaign, int(raw)) if raw.isdigit() else None
    found = found or records.campaign_named(ctx.session, name=raw)
    if found is None:
        known = [c.name for c in stored_campaigns.all_campaigns(ctx.session)[:10]]
        errors["campaign"] = text_for("feedback_campaign_unknown", name=raw, known=known)
    return found


def _campaign_needed(ctx: Context, about: str, audience: str, errors: dict[str, str]) -> None:
    """No campaign was picked: fine unless the request is about one or asks its reps. With
    no campaign known at all the form has no campaign input, so the other input is named."""
    if about != FeedbackAbout.campaign and audience != records.CAMPAIGN:
        return
    if not records.any_campaign(ctx.session):
        field = "about" if about == FeedbackAbout.campaign else "audience"
        errors[field] = text_for(f"feedback_no_campaigns_{field}")
    elif about == FeedbackAbout.campaign:
        errors["campaign"] = text_for("feedback_campaign_needed")
    else:
        errors["campaign"] = text_for("feedback_campaign_needed_for_audience")


def _audience(ctx: Context, raw: str, errors: dict[str, str]) -> str:
    teams = {f"{records.TEAM_PREFIX}{team}" for team, _ in records.teams(ctx.session)}
    if raw in (records.ALL, records.CAMPAIGN) or raw in teams:
        return raw
    errors["audience"] = text_for("feedback_pick_audience")
    return ""


def _questions(interaction: Interaction, errors: dict[str, str]) -> tuple[records.NewQuestion, ...]:
    questions = []
    for n in range(1, QUESTIONS + 1):
        text = " ".join(interaction.value(f"q{n}").split())
        kind = interaction.value(f"q{n}_kind") or QuestionKind.text.value
        raw_options = interaction.value(f"q{n}_options")
        if not text:
            if raw_options:
                errors[f"q{n}_options"] = text_for("feedback_options_without_question", n=n)
            continue
        if len(text) > QUESTION_LIMIT:
            errors[f"q{n}"] = text_for("too_long", limit=QUESTION_LIMIT)
        if kind not in {k.value for k in QuestionKind}:
            errors[f"q{n}_kind"] = text_for("feedback_kind_unknown")
            continue
        options = _options(n, kind, raw_options, errors)
        questions.append(records.NewQuestion(kind, text, options))
    named = {f"q{n}" for n in range(1, QUESTIONS + 1)} | {f"q{n}_kind" for n in range(1, 4)}
    if not questions and not named & set(errors):
        errors["q1"] = text_for("feedback_no_questions")
    return tuple(questions)


def _options(n: int, kind: str, raw: str, errors: dict[str, str]) -> tuple[str, ...]:
    name = f"q{n}_options"
    if kind != QuestionKind.choice:
        if raw:
            errors[name] = text_for("feedback_options_not_choice")
        return ()
    if len(raw) > OPTIONS_FIELD_LIMIT:
        errors[name] = text_for("too_long", limit=OPTIONS_FIELD_LIMIT)
        return ()
    options = tuple(" ".join(o.split()) for o in raw.split(",") if o.strip())
    seen: set[str] = set()
    for option in options:
        if len(option) > OPTION_LIMIT:
            errors[name] = text_for("feedback_option_too_long", option=option, limit=OPTION_LIMIT)
            return ()
        if option.lower() in seen:
            errors[name] = text_for("feedback_option_twice", option=option)
            return ()
        seen.add(option.lower())
    if not OPTIONS_MIN <= len(options) <= OPTIONS_MAX:
        errors[name] = text_for(
            "feedback_options_count", given=len(options), least=OPTIONS_MIN, most=OPTIONS_MAX
        )
    return options


def _deadline(ctx: Context, interaction: Interaction, errors: dict[str, str]) -> datetime | None:
    """The end of the chosen day's working hours, in the requester's time zone."""
    try:
        day = date.fromisoformat(interaction.value("deadline"))
    except ValueError:
        errors["deadline"] = text_for("feedback_deadline_bad")
        return None
    calendar = calendar_of(ctx.session, interaction.actor, ctx.company)
    zone = ZoneInfo(calendar.tz)
    today = ctx.now.astimezone(zone).date()
    end = datetime.combine(day, calendar.end, tzinfo=zone).astimezone(UTC)
    if day < today:
        errors["deadline"] = text_for("feedback_deadline_past", day=day.isoformat())
    elif end <= ctx.now:
        errors["deadline"] = text_for("feedback_deadline_today_over", at=when(end, calendar.tz))
    elif day > today + timedelta(days=MAX_DAYS):
        errors["deadline"] = text_for("feedback_deadline_too_far", days=MAX_DAYS)
    else:
        return end
    return None


# ---------------------------------------------------------------- answering


def _answerable(
    ctx: Context, interaction: Interaction, *, lock: bool = False
) -> FeedbackRequest | list[Effect]:
    """The open request this member was asked, or the private answer saying why not."""
    raw = interaction.arg("request")
    request = (
        records.get_request(ctx.session, request_id=int(raw), lock=lock) if raw.isdigit() else None
    )
    if request is None:
        return private(text_for("feedback_not_found", id=raw or "?"))
    actor = interaction.actor
    if not records.is_recipient(ctx.session, request_id=request.id or 0, member_id=actor.id or 0):
        return private(text_for("feedback_not_asked", requester=_name(ctx, request.requester_id)))
    if request.closed_at is not None or ctx.now >= request.deadline:
        closed = min(request.closed_at or request.deadline, request.deadline)
        return private(text_for("feedback_closed", at=when(closed, _tz(ctx, actor))))
    return request


def open_answer(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = _answerable(ctx, interaction)
    if isinstance(found, list):
        return found
    request_id = found.id or 0
    questions = records.questions_of(ctx.session, request_id=request_id)
    previous = records.answers_of(
        ctx.session, request_id=request_id, member_id=interaction.actor.id or 0
    )
    form = Form(
        name="feedback.answer",
        title=text_for("feedback_answer_title"),
        intro=text_for(
            "feedback_answer_intro",
            requester=_name(ctx, found.requester_id),
            subject=found.subject,
            deadline=when(found.deadline, _tz(ctx, interaction.actor)),
        ),
        inputs=tuple(_answer_input(q, previous.get(q.id or 0)) for q in questions),
        submit_label=text_for("button_send"),
        state={"request": str(request_id), "nonce": nonce()},
    )
    return [ShowForm(form)]


def _answer_input(question: FeedbackQuestion, previous: str | None) -> Input:
    initial = (previous,) if previous else ()
    name = f"a{question.position}"
    if question.kind == QuestionKind.rating:
        ratings = tuple(
            Option(str(r), text_for("feedback_rating_option", n=r)) for r in records.RATINGS
        )
        return Input(name, question.text, InputKind.select, ratings, initial=initial)
    if question.kind == QuestionKind.choice:
        choices = tuple(Option(o, o) for o in question.options)
        return Input(name, question.text, InputKind.select, choices, initial=initial)
    return Input(name, question.text, InputKind.multiline, max_length=ANSWER_LIMIT, initial=initial)


def submit_answer(ctx: Context, interaction: Interaction) -> list[Effect]:
    # The request row is locked, so a close (deadline pass or command) waits for this answer
    # and its summary counts it, or this answer waits and is then refused.
    found = _answerable(ctx, interaction, lock=True)
    if isinstance(found, list):
        return found
    request_id, member_id = found.id or 0, interaction.actor.id or 0
    questions = records.questions_of(ctx.session, request_id=request_id)
    values: dict[int, str] = {}
    errors: dict[str, str] = {}
    texts: dict[str, str] = {}
    for question in questions:
        name = f"a{question.position}"
        value, problem = _answer_value(question, interaction.value(name))
        if problem:
            errors[name] = problem
        values[question.id or 0] = value
        if question.kind == QuestionKind.text:
            texts[name] = value
    if errors:
        return [FormErrors(errors)]
    held = tone.first_flag(ctx.session, texts)
    if held:
        return [FormErrors(held)]
    edited = bool(records.answers_of(ctx.session, request_id=request_id, member_id=member_id))
    for question_id, value in values.items():
        records.save_answer(
            ctx.session,
            request_id=request_id,
            question_id=question_id,
            member_id=member_id,
            value=value,
            now=ctx.now,
        )
    deadline = when(found.deadline, _tz(ctx, interaction.actor))
    saved = "feedback_answer_updated" if edited else "feedback_answer_saved"
    return private(text_for(saved, deadline=deadline))


def _answer_value(question: FeedbackQuestion, raw: str) -> tuple[str, str]:
    """(the value to store, the problem with it or "")."""
    if question.kind == QuestionKind.rating:
        if raw in {str(r) for r in records.RATINGS}:
            return raw, ""
        return "", text_for("feedback_answer_pick_rating")
    if question.kind == QuestionKind.choice:
        match = next((o for o in question.options if o.lower() == raw.strip().lower()), None)
        if match is not None:
            return match, ""
        return "", text_for("feedback_answer_pick_choice", options=question.options)
    if not raw:
        return "", text_for("feedback_answer_empty")
    if len(raw) > ANSWER_LIMIT:
        return "", text_for("too_long", limit=ANSWER_LIMIT)
    return raw, ""


# ---------------------------------------------------------------- the requester's views


def _own(
    ctx: Context, interaction: Interaction, raw: str, *, lock: bool = False
) -> FeedbackRequest | list[Effect]:
    """The request, if the actor asked for it (or is an admin), else why not."""
    request = (
        records.get_request(ctx.session, request_id=int(raw), lock=lock) if raw.isdigit() else None
    )
    if request is None:
        return private(text_for("feedback_not_found", id=raw or "?"))
    actor = interaction.actor
    if actor.id != request.requester_id and actor.role != Role.admin:
        return private(text_for("feedback_not_yours", requester=_name(ctx, request.requester_id)))
    return request


def show_summary(ctx: Context, interaction: Interaction, raw: str) -> list[Effect]:
    """The live summary, privately: the same figures the requester gets at the close."""
    found = _own(ctx, interaction, raw)
    if isinstance(found, list):
        return found
    summary = records.summary(ctx.session, request_id=found.id or 0)
    assert summary is not None
    about = feedback_cards.about_words(ctx.session, found)
    tz = _tz(ctx, interaction.actor)
    return [Reply(feedback_cards.summary_card(summary, about, tz, now=ctx.now, actions=True))]


def summary_button(ctx: Context, interaction: Interaction) -> list[Effect]:
    return show_summary(ctx, interaction, interaction.arg("request"))


def close(ctx: Context, interaction: Interaction, raw: str) -> list[Effect]:
    """Close before the deadline: once, and the requester gets the summary."""
    found = _own(ctx, interaction, raw, lock=True)
    if isinstance(found, list):
        return found
    request_id = found.id or 0
    tz = _tz(ctx, interaction.actor)
    by = "requester" if interaction.actor.id == found.requester_id else "admin"
    at = min(ctx.now, found.deadline)
    closed = records.close_request(ctx.session, request_id=request_id, at=at, by=by)
    if closed is None:
        when_closed = when(found.closed_at or found.deadline, tz)
        return private(text_for("feedback_already_closed", id=request_id, at=when_closed))
    card = feedback_cards.final_summary_card(ctx.session, closed, ctx.company)
    summary = Notify(closed.requester_id, card, key=feedback_cards.summary_key(request_id))
    if by == "requester":
        return [summary, *private(text_for("feedback_closed_now", id=request_id))]
    requester = _name(ctx, closed.requester_id)
    return [summary, *private(text_for("feedback_closed_for", id=request_id, requester=requester))]


def close_button(ctx: Context, interaction: Interaction) -> list[Effect]:
    return close(ctx, interaction, interaction.arg("request"))


def list_requests(ctx: Context, interaction: Interaction) -> list[Effect]:
    """My newest requests, each with how many of those asked have answered."""
    lines = records.requests_of(ctx.session, requester_id=interaction.actor.id or 0)
    if not lines:
        return private(text_for("feedback_list_empty"))
    tz = _tz(ctx, interaction.actor)
    fields = tuple(
        Fact(
            text_for("feedback_list_label", id=line.request_id, subject=line.subject),
            text_for(
                "feedback_list_line",
                responded=line.responded,
                asked=line.asked,
                open=line.closed_at is None and ctx.now < line.deadline,
                at=when(line.closed_at or line.deadline, tz),
            ),
        )
        for line in lines
    )
    buttons = tuple(
        Button(
            text_for("feedback_list_button", id=line.request_id),
            "feedback.summary",
            _value(line.request_id),
        )
        for line in lines[:WAITING_SHOWN]
    )
    return [
        Reply(
            Card(
                title=text_for("feedback_list_title"),
                fields=fields,
                context=text_for("feedback_list_context"),
                buttons=buttons,
            )
        )
    ]
