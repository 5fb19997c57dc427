"""Proposing a new lead-definition or SLA version for sign-off (part of approvals):
`leaddef propose` and `sla propose` open a form pre-filled with the version in force; the
submit is validated (the SLA with `liaison sla set`'s own model and limits) and stored as an
approval request with a sign-off per approver of both sides, each of whom is asked.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from bot.core.effects import Effect, FormErrors, Notify, ShowForm
from bot.core.interaction import Interaction
from bot.core.messages import Form, Input, InputKind
from bot.core.router import Context
from bot.core.text import text_for, when
from handlers import tone
from handlers.approval_cards import ask_card, proposer_of, sla_value, subject_name
from handlers.common import nonce, private, refuse_unless
from handlers.sla import MarketingTerms, ReminderTerms, SalesTerms, SlaFile
from storage import approvals, definitions, policies
from storage.calendars import one_business_day_after
from storage.models import ApprovalStatus, ApprovalSubject, Role

KEY_LIMIT = 32
KEY = re.compile(rf"[a-z0-9_]{{1,{KEY_LIMIT}}}")
TEXT_LIMIT = 200  # a criterion's text
MAX_CRITERIA = 20
CRITERIA_INPUT_LIMIT = 3000  # Slack's limit for a text input
NOTE_LIMIT = 500
PROPOSERS = (Role.marketer, Role.manager, Role.leader)  # and admins
SECTIONS: dict[str, type[BaseModel]] = {
    "sales": SalesTerms,
    "marketing": MarketingTerms,
    "reminders": ReminderTerms,
}
SLA_FIELDS = (
    "first_touch_hours",
    "verdict_hours",
    "attempts",
    "attempts_days",
    "leads_per_week",
    "acceptance_rate",
    "info_answer_hours",
    "remind_share",
    "escalate_after_hours",
)
SECTION_OF = {name: s for s, model in SECTIONS.items() for name in model.model_fields}


# ---------------------------------------------------------------- may this member propose?


def may_propose(ctx: Context, interaction: Interaction, subject: str) -> list[Effect] | None:
    """None when the actor may propose a new version of `subject` now, else the private
    answer that says why not (role, no approvers, one already waiting)."""
    refused = refuse_unless(
        interaction.actor,
        *PROPOSERS,
        action=text_for("approvals_action_propose", subject=subject_name(subject)),
    )
    if refused:
        return refused
    names = approvals.approver_names(ctx.session)
    missing = [side for side in approvals.SIDES if not names[side]]
    if missing:
        return private(text_for("approvals_no_approvers", missing=missing, names=names))
    waiting = approvals.pending_for(ctx.session, subject=subject)
    if waiting is not None:
        return private(
            text_for(
                "approvals_one_at_a_time",
                id=waiting.id,
                subject=subject_name(subject),
                proposer=proposer_of(ctx.session, waiting),
                at=when(waiting.created_at, interaction.actor.timezone or ctx.company.tz),
                waiting=[
                    m.name for m in approvals.undecided(ctx.session, request_id=waiting.id or 0)
                ],
            )
        )
    return None


# ---------------------------------------------------------------- lead definition proposals


def open_leaddef_proposal(ctx: Context, interaction: Interaction) -> list[Effect]:
    refused = may_propose(ctx, interaction, ApprovalSubject.leaddef)
    if refused:
        return refused
    definition, criteria = definitions.current_definition(ctx.session)
    lines = "\n".join(f"{c.key}: {c.text}" for c in criteria)
    form = Form(
        name="approval.propose_leaddef",
        title=text_for("approvals_leaddef_form_title"),
        intro=text_for("approvals_leaddef_form_intro", version=definition.version),
        inputs=(
            Input(
                "criteria",
                text_for("approvals_criteria_label"),
                InputKind.multiline,
                max_length=CRITERIA_INPUT_LIMIT,
                initial=(lines,),
            ),
            _note_input(),
        ),
        submit_label=text_for("approvals_button_propose"),
        state={"nonce": nonce()},
    )
    return [ShowForm(form)]


def _note_input() -> Input:
    return Input(
        "note",
        text_for("approvals_note_label"),
        InputKind.multiline,
        max_length=NOTE_LIMIT,
        placeholder=text_for("approvals_note_placeholder"),
    )


def parse_criteria(
    text: str, *, current: Sequence[tuple[str, str]] = (), used: Collection[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """`key: text` lines, or just the text (blank lines skipped) → the criteria, and the
    problems by line. A line without a key gets one (see `with_keys`)."""
    criteria: list[tuple[str | None, str]] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key: str | None
        key, colon, rest = line.partition(":")
        key, rest = key.strip(), rest.strip()
        if not colon:
            key, rest = None, line.strip()
        elif not KEY.fullmatch(key):
            problems.append(
                text_for("approvals_line_bad_key", n=number, key=_cut(key), slug=_slug(key))
            )
        elif key in first_seen:
            problems.append(
                text_for("approvals_line_duplicate", n=number, key=key, first=first_seen[key])
            )
        if not rest:
            problems.append(text_for("approvals_line_no_text", n=number, key=_cut(key or "")))
        elif len(rest) > TEXT_LIMIT:
            problems.append(
                text_for("approvals_line_too_long", n=number, length=len(rest), limit=TEXT_LIMIT)
            )
        if key is not None:
            first_seen.setdefault(key, number)
        criteria.append((key, rest))
    if not criteria and not problems:
        problems.append(text_for("approvals_no_criteria"))
    if len(criteria) > MAX_CRITERIA:
        problems.append(
            text_for("approvals_too_many_criteria", count=len(criteria), limit=MAX_CRITERIA)
        )
    return with_keys(criteria, current=current, used=used), problems


def with_keys(
    criteria: Sequence[tuple[str | None, str]],
    *,
    current: Sequence[tuple[str, str]] = (),
    used: Collection[str] = (),
) -> list[tuple[str, str]]:
    """The criteria, each with a key: a given key is kept; one typed without a key takes
    the key of the criterion in force with the same text, else one derived from its text
    ("Uses a CRM" → uses_a_crm) that no criterion has, had or is given."""
    given = {key for key, _ in criteria if key}
    in_force = {_words(text): key for key, text in current}
    taken = given | set(used) | {key for key, _ in current}
    keyed: list[tuple[str, str]] = []
    for key, text in criteria:
        if not key:
            same = in_force.pop(_words(text), None)
            key = same if same is not None and same not in given else derived_key(text, taken)
            taken.add(key)
        keyed.append((key, text))
    return keyed


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def derived_key(text: str, taken: Collection[str]) -> str:
    """A key from a criterion's text: its letters and digits in lower case, words joined
    by _, at most KEY_LIMIT long, with _2, _3… when `taken` has it already."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    base = _slug(plain, fallback="criterion")
    key, n = base, 2
    while key in taken:
        suffix = f"_{n}"
        key = base[: KEY_LIMIT - len(suffix)].rstrip("_") + suffix
        n += 1
    return key


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slug(text: str, fallback: str = "budget") -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:KEY_LIMIT].rstrip("_") or fallback


def _problems(problems: list[str]) -> str:
    shown = " ".join(problems[:3])
    return shown + (
        " " + text_for("approvals_more_problems", count=len(problems) - 3)
        if len(problems) > 3
        else ""
    )


def criteria_changes(
    old: list[tuple[str, str]], new: list[tuple[str, str]]
) -> dict[str, list[list[str]]]:
    """Added (key, text), edited (key, old text, new text) and retired (key, text)."""
    before, after = dict(old), dict(new)
    return {
        "added": [[k, t] for k, t in new if k not in before],
        "edited": [[k, before[k], t] for k, t in new if k in before and before[k] != t],
        "retired": [[k, t] for k, t in old if k not in after],
    }


def note_problem(note: str) -> str | None:
    if not note:
        return text_for("approvals_note_needed")
    if len(note) > NOTE_LIMIT:
        return text_for("too_long", limit=NOTE_LIMIT)
    return None


def submit_leaddef_proposal(ctx: Context, interaction: Interaction) -> list[Effect]:
    approvals.lock_subject(ctx.session, subject=ApprovalSubject.leaddef)
    refused = may_propose(ctx, interaction, ApprovalSubject.leaddef)
    if refused:
        return refused
    definition, current = definitions.current_definition(ctx.session)
    new, problems = parse_criteria(
        interaction.values.get("criteria", [""])[0],
        current=[(c.key, c.text) for c in current],
        used=definitions.criterion_keys(ctx.session),
    )
    note = interaction.value("note")
    errors = {}
    if problems:
        errors["criteria"] = _problems(problems)
    if problem := note_problem(note):
        errors["note"] = problem
    if errors:
        return [FormErrors(errors)]
    changes = criteria_changes([(c.key, c.text) for c in current], new)
    if not any(changes.values()):
        return [
            FormErrors(
                {"criteria": text_for("approvals_nothing_changed", version=definition.version)}
            )
        ]
    changed_texts = [t for _, t in changes["added"]] + [e[2] for e in changes["edited"]]
    held = tone.first_flag(ctx.session, {"criteria": "\n".join(changed_texts), "note": note})
    if held:
        return [FormErrors(held)]
    payload = {
        "base_version": definition.version,
        "criteria": [[k, t] for k, t in new],
        **changes,
    }
    return propose(ctx, interaction, ApprovalSubject.leaddef, payload, note)


# ---------------------------------------------------------------- SLA proposals


def open_sla_proposal(ctx: Context, interaction: Interaction) -> list[Effect]:
    refused = may_propose(ctx, interaction, ApprovalSubject.sla)
    if refused:
        return refused
    policy = policies.current_policy(ctx.session)
    inputs = tuple(
        Input(
            name,
            text_for(f"approvals_sla_{name}"),
            InputKind.text,
            max_length=12,
            initial=(sla_value(name, getattr(policy, name)),),
        )
        for name in SLA_FIELDS
    )
    form = Form(
        name="approval.propose_sla",
        title=text_for("approvals_sla_form_title"),
        intro=text_for("approvals_sla_form_intro", version=policy.version),
        inputs=(*inputs, _note_input()),
        submit_label=text_for("approvals_button_propose"),
        state={"nonce": nonce()},
    )
    return [ShowForm(form)]


def _range(name: str) -> str:
    """What a field accepts, from the limits of `liaison sla set`'s model."""
    info = SECTIONS[SECTION_OF[name]].model_fields[name]
    limits: dict[str, Any] = {}
    for constraint in info.metadata:
        for bound in ("gt", "ge", "lt", "le"):
            if getattr(constraint, bound, None) is not None:
                limits[bound] = getattr(constraint, bound)
    return text_for(
        "approvals_sla_range",
        whole=int in get_args(info.annotation),
        percent=name == "acceptance_rate",
        low=f"{limits.get('gt', limits.get('ge', 0)):g}",
        low_open="gt" in limits,
        high=f"{limits.get('lt', limits.get('le', 0)):g}",
        high_open="lt" in limits,
    )


def parse_sla(interaction: Interaction, note: str) -> SlaFile | dict[str, str]:
    """The form's values through `liaison sla set`'s model, or the errors by input."""
    raw = {name: interaction.value(name) for name in SLA_FIELDS}
    errors = {name: text_for("approvals_sla_needed") for name, value in raw.items() if not value}
    if errors:
        return errors
    data: dict[str, Any] = {"note": note}
    for name, value in raw.items():
        data.setdefault(SECTION_OF[name], {})[name] = value
    try:
        return SlaFile.model_validate(data)
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            name = str(problem["loc"][-1]) if problem["loc"] else SLA_FIELDS[0]
            if name in SECTION_OF:
                errors.setdefault(name, _range(name))
        return errors or {SLA_FIELDS[0]: text_for("approvals_sla_needed")}


def submit_sla_proposal(ctx: Context, interaction: Interaction) -> list[Effect]:
    approvals.lock_subject(ctx.session, subject=ApprovalSubject.sla)
    refused = may_propose(ctx, interaction, ApprovalSubject.sla)
    if refused:
        return refused
    note = interaction.value("note")
    spec = parse_sla(interaction, note)
    errors = dict(spec) if isinstance(spec, dict) else {}
    if problem := note_problem(note):
        errors["note"] = problem
    if errors or isinstance(spec, dict):
        return [FormErrors(errors)]
    policy = policies.current_policy(ctx.session)
    fields = spec.fields()
    changed = [
        [name, getattr(policy, name), fields[name]]
        for name in SLA_FIELDS
        if not math.isclose(float(getattr(policy, name)), float(fields[name]))
    ]
    if not changed:
        return [
            FormErrors(
                {SLA_FIELDS[0]: text_for("approvals_nothing_changed", version=policy.version)}
            )
        ]
    held = tone.first_flag(ctx.session, {"note": note})
    if held:
        return [FormErrors(held)]
    payload = {"base_version": policy.version, "fields": fields, "changed": changed}
    return propose(ctx, interaction, ApprovalSubject.sla, payload, note)


# ---------------------------------------------------------------- sending a proposal


def propose(
    ctx: Context, interaction: Interaction, subject: str, payload: dict[str, Any], note: str
) -> list[Effect]:
    """Store the request with a sign-off per approver of both sides and ask each of them.
    A proposer who is an approver signs by proposing."""
    actor = interaction.actor
    named = approvals.approvers(ctx.session)
    request = approvals.create_request(
        ctx.session,
        subject=subject,
        proposed_by=actor.id or 0,
        proposer_label=actor.name,
        payload=payload,
        note=note,
        signoffs=[(m.id or 0, side) for side, m in named],
        remind_at=one_business_day_after(ctx.session, ctx.now, ctx.company),
        now=ctx.now,
    )
    own = approvals.signoff_of(ctx.session, request_id=request.id or 0, member_id=actor.id or 0)
    if own is not None:
        approvals.decide(
            ctx.session,
            signoff=own,
            decision=ApprovalStatus.approved.value,
            comment=text_for("approvals_own_proposal"),
            now=ctx.now,
        )
    effects: list[Effect] = [
        Notify(
            m.id or 0,
            ask_card(ctx.session, request, tz=m.timezone or ctx.company.tz),
            key=f"approval:{request.id}:ask:{m.id}",
            nudge=True,
        )
        for _, m in named
        if m.id != actor.id
    ]
    asked = [m.name for _, m in named if m.id != actor.id]
    effects += private(
        text_for("approvals_proposed", id=request.id, subject=subject_name(subject), asked=asked)
    )
    return effects
