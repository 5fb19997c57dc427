"""Approvals: blocking sign-offs of a new lead-definition or SLA version by the named
approvers of both sides. `leaddef propose` and `sla propose` (handlers/proposals.py) send a
request; each approver gets a card with the change and Approve / Reject; the version comes
into force only when all have approved, and one rejection closes the request. `approvals`
lists what waits on me and what I proposed, `approvals ID` the history, and `approvals set`
(admins) names the approvers.

Approvals share no table and no code path with field feedback (which never blocks).
"""

from __future__ import annotations

import re

from sqlmodel import Session

from bot.core.effects import Effect, FormErrors, Notify, Reply, ShowForm
from bot.core.interaction import Interaction, Person
from bot.core.messages import Card, Fact, Form, Input, InputKind
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers import proposals, tone
from handlers.approval_cards import (
    ask_card,
    change_fields,
    decision_buttons,
    proposer_of,
    subject_name,
)
from handlers.common import nonce, private, refuse_unless
from storage import approvals, definitions, policies
from storage import members as stored_members
from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    ApprovalStatus,
    ApprovalSubject,
    Member,
    Role,
)

EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+")
COMMENT_LIMIT = 1000


def register(router: Router) -> None:
    router.command(
        "approvals",
        approvals_command,
        summary=text_for("help_approvals"),
        usage="approvals [ID | set --sales EMAIL,… --marketing EMAIL,…]",
    )
    router.subcommand("leaddef", "propose", proposals.open_leaddef_proposal)
    router.subcommand("sla", "propose", proposals.open_sla_proposal)
    router.form("approval.propose_leaddef", proposals.submit_leaddef_proposal)
    router.form("approval.propose_sla", proposals.submit_sla_proposal)
    router.action("approval.approve", open_decision)
    router.action("approval.reject", open_decision)
    router.form("approval.decide", submit_decision)


# ---------------------------------------------------------------- who the approvers are


def approver_lists(
    session: Session, *, sales: str | None, marketing: str | None
) -> dict[str, list[Member]] | str:
    """The new approvers of each side given (comma-separated emails of known members), or
    why they cannot be (for `liaison approvers set` and `approvals set`)."""
    given = {
        side: raw for side, raw in (("sales", sales), ("marketing", marketing)) if raw is not None
    }
    if not given:
        return text_for("approvals_set_usage")
    lists: dict[str, list[Member]] = {}
    for side, raw in given.items():
        emails = list(dict.fromkeys(e.strip().lower() for e in raw.split(",") if e.strip()))
        if not emails:
            return text_for("approvals_side_empty", side=side)
        bad = [e for e in emails if not EMAIL.fullmatch(e)]
        if bad:
            return text_for("approvals_not_emails", emails=bad)
        found = {e: stored_members.member_by(session, email=e) for e in emails}
        unknown = [e for e, m in found.items() if m is None]
        if unknown:
            return text_for("approvals_unknown_emails", emails=unknown)
        lists[side] = [m for m in found.values() if m is not None]
    current = approvals.approvers(session)
    final = {
        side: lists.get(side, [m for s, m in current if s == side]) for side in approvals.SIDES
    }
    marketing_ids = {m.id for m in final["marketing"]}
    both = [m.name for m in final["sales"] if m.id in marketing_ids]
    if both:
        return text_for("approvals_on_both_sides", names=both)
    return lists


def apply_approvers(session: Session, lists: dict[str, list[Member]]) -> dict[str, list[str]]:
    """Replace each given side's approvers; the names of both sides afterwards."""
    for side, members in lists.items():
        approvals.set_approvers(session, side=side, member_ids=[m.id or 0 for m in members])
    return approvals.approver_names(session)


def set_in_chat(ctx: Context, interaction: Interaction, rest: str) -> list[Effect]:
    """`approvals set --sales a@x.com,b@x.com --marketing c@x.com` (admins only)."""
    refused = refuse_unless(
        interaction.actor, Role.admin, action=text_for("approvals_action_configure")
    )
    if refused:
        return refused
    given: dict[str, list[str]] = {}
    side = None
    for token in rest.split():
        if token in ("--sales", "--marketing"):
            side = token[2:]
            given.setdefault(side, [])
        elif side is None:
            return private(text_for("approvals_set_usage"))
        else:
            given[side].append(token)
    lists = approver_lists(
        ctx.session,
        sales=",".join(given["sales"]) if "sales" in given else None,
        marketing=",".join(given["marketing"]) if "marketing" in given else None,
    )
    if isinstance(lists, str):
        return private(lists)
    names = apply_approvers(ctx.session, lists)
    return private(text_for("approvals_set_done", names=names, waiting=still_waiting(ctx.session)))


def still_waiting(session: Session) -> list[int]:
    """Ids of the pending requests, which keep the approvers they were sent to."""
    found = (approvals.pending_for(session, subject=subject) for subject in ApprovalSubject)
    return [request.id or 0 for request in found if request is not None]


# ---------------------------------------------------------------- deciding


def decidable(
    ctx: Context, interaction: Interaction, *, lock: bool = False
) -> tuple[ApprovalRequest, ApprovalSignoff] | list[Effect]:
    """The request named by `request=<id>` and the actor's open sign-off on it, or the
    private answer that says why this member cannot decide on it (now)."""
    raw = interaction.arg("request")
    request = (
        approvals.get_request(ctx.session, request_id=int(raw), lock=lock)
        if raw.isdigit()
        else None
    )
    if request is None:
        return private(text_for("approvals_not_found", id=raw))
    tz = interaction.actor.timezone or ctx.company.tz
    signoff = approvals.signoff_of(
        ctx.session, request_id=request.id or 0, member_id=interaction.actor.id or 0
    )
    if signoff is None:
        approvers = [
            text_for("approvals_named", name=m.name, side=s.side)
            for s, m in approvals.signoffs_of(ctx.session, request_id=request.id or 0)
        ]
        return private(text_for("approvals_not_an_approver", id=request.id, approvers=approvers))
    if signoff.decision is not None and signoff.decided_at is not None:
        return private(
            text_for(
                "approvals_already_decided",
                id=request.id,
                decision=signoff.decision,
                at=when(signoff.decided_at, tz),
            )
        )
    if request.status != ApprovalStatus.pending:
        return private(_closed(request, tz))
    return request, signoff


def _closed(request: ApprovalRequest, tz: str) -> str:
    return text_for(
        "approvals_closed",
        id=request.id,
        status=request.status,
        version=request.version,
        subject=subject_name(request.subject),
        at=when(request.decided_at, tz) if request.decided_at else "",
    )


def open_decision(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = decidable(ctx, interaction)
    if isinstance(found, list):
        return found
    request, _ = found
    decision = "approved" if interaction.name == "approval.approve" else "rejected"
    form = Form(
        name="approval.decide",
        title=text_for(f"approvals_{decision}_form_title"),
        intro=text_for(
            f"approvals_{decision}_form_intro",
            id=request.id,
            subject=subject_name(request.subject),
            proposer=proposer_of(ctx.session, request),
            changes=[f"{f.label}: {f.value}" for f in change_fields(request)],
        ),
        inputs=(
            Input(
                "comment",
                text_for(f"approvals_{decision}_comment_label"),
                InputKind.multiline,
                required=decision == "rejected",
                max_length=COMMENT_LIMIT,
            ),
        ),
        submit_label=text_for(f"approvals_button_{decision}"),
        state={"request": str(request.id), "decision": decision, "nonce": nonce()},
    )
    return [ShowForm(form)]


def submit_decision(ctx: Context, interaction: Interaction) -> list[Effect]:
    found = decidable(ctx, interaction, lock=True)
    if isinstance(found, list):
        return found
    request, signoff = found
    decision = interaction.arg("decision")
    if decision not in ("approved", "rejected"):
        return private(text_for("approvals_not_found", id=request.id))
    comment = interaction.value("comment")
    if decision == "rejected" and not comment:
        proposer = proposer_of(ctx.session, request)
        return [FormErrors({"comment": text_for("approvals_reason_needed", proposer=proposer)})]
    if len(comment) > COMMENT_LIMIT:
        return [FormErrors({"comment": text_for("too_long", limit=COMMENT_LIMIT)})]
    held = tone.first_flag(ctx.session, {"comment": comment})
    if held:
        return [FormErrors(held)]
    approvals.decide(ctx.session, signoff=signoff, decision=decision, comment=comment, now=ctx.now)
    if decision == "rejected":
        return rejected(ctx, interaction, request, comment)
    if approvals.undecided_count(ctx.session, request_id=request.id or 0) == 0:
        return into_force(ctx, interaction, request)
    return approved_so_far(ctx, interaction, request)


def _others(ctx: Context, request: ApprovalRequest, actor: Person) -> list[Member]:
    """Everyone the request concerns (proposer and approvers), except the actor, once."""
    people: dict[int, Member] = {}
    if request.proposed_by is not None:
        proposer = ctx.session.get(Member, request.proposed_by)
        if proposer is not None:
            people[proposer.id or 0] = proposer
    for _, member in approvals.signoffs_of(ctx.session, request_id=request.id or 0):
        people.setdefault(member.id or 0, member)
    people.pop(actor.id or 0, None)
    return list(people.values())


def rejected(
    ctx: Context, interaction: Interaction, request: ApprovalRequest, comment: str
) -> list[Effect]:
    """One rejection closes the request; the version in force stays."""
    approvals.close(ctx.session, request=request, status=ApprovalStatus.rejected.value, now=ctx.now)
    actor = interaction.actor
    side = _side_of(ctx.session, request, actor)
    effects: list[Effect] = []
    for member in _others(ctx, request, actor):
        is_proposer = member.id == request.proposed_by
        card = Card(
            title=text_for(
                "approvals_rejected_title",
                id=request.id,
                subject=subject_name(request.subject),
                who=actor.name,
            ),
            text=text_for(
                "approvals_rejected_text",
                who=actor.name,
                side=side,
                comment=comment,
                at=when(ctx.now, member.timezone or ctx.company.tz),
                subject=subject_name(request.subject),
                command=_command(request.subject),
                proposer=is_proposer,
            ),
            fields=change_fields(request),
            context=text_for("approvals_history_hint", id=request.id),
        )
        effects.append(
            Notify(member.id or 0, card, key=f"approval:{request.id}:rejected:{member.id}")
        )
    effects += private(
        text_for(
            "approvals_you_rejected", id=request.id, proposer=proposer_of(ctx.session, request)
        )
    )
    return effects


def approved_so_far(
    ctx: Context, interaction: Interaction, request: ApprovalRequest
) -> list[Effect]:
    """Not the last approval: the proposer hears who approved and who is still to sign."""
    actor = interaction.actor
    waiting = [m.name for m in approvals.undecided(ctx.session, request_id=request.id or 0)]
    effects: list[Effect] = []
    proposer = ctx.session.get(Member, request.proposed_by) if request.proposed_by else None
    if proposer is not None and proposer.id != actor.id:
        card = Card(
            title=text_for(
                "approvals_progress_title",
                id=request.id,
                who=actor.name,
                subject=subject_name(request.subject),
            ),
            text=text_for("approvals_progress_text", waiting=waiting),
            context=text_for("approvals_history_hint", id=request.id),
        )
        effects.append(
            Notify(proposer.id or 0, card, key=f"approval:{request.id}:approved:{actor.id}")
        )
    effects += private(text_for("approvals_you_approved", id=request.id, waiting=waiting))
    return effects


def into_force(ctx: Context, interaction: Interaction, request: ApprovalRequest) -> list[Effect]:
    """The last approval: the new version is created and everyone concerned hears so."""
    approved_by = [
        m.name
        for s, m in approvals.signoffs_of(ctx.session, request_id=request.id or 0)
        if s.decision == ApprovalStatus.approved
    ]
    note = text_for("approvals_version_note", note=request.note, id=request.id, names=approved_by)
    created_by = proposer_of(ctx.session, request)
    if request.subject == ApprovalSubject.leaddef:
        criteria = [(str(k), str(t)) for k, t in request.payload["criteria"]]
        version = definitions.create_definition(
            ctx.session, criteria=criteria, note=note, created_by=created_by, now=ctx.now
        ).version
    else:
        version = policies.create_policy(
            ctx.session,
            fields=dict(request.payload["fields"]),
            note=note,
            created_by=created_by,
            now=ctx.now,
        ).version
    approvals.close(
        ctx.session,
        request=request,
        status=ApprovalStatus.approved.value,
        now=ctx.now,
        version=version,
    )

    def card() -> Card:
        return Card(
            title=text_for(
                "approvals_in_force_title", subject=subject_name(request.subject), version=version
            ),
            text=text_for(
                "approvals_in_force_text",
                id=request.id,
                names=approved_by,
                proposer=created_by,
                command=_command(request.subject).split()[0],
            ),
            fields=change_fields(request),
            context=text_for("approvals_history_hint", id=request.id),
        )

    effects: list[Effect] = [
        Notify(m.id or 0, card(), key=f"approval:{request.id}:done:{m.id}")
        for m in _others(ctx, request, interaction.actor)
    ]
    effects.append(Reply(card()))
    return effects


def _side_of(session: Session, request: ApprovalRequest, member: Person | Member) -> str:
    signoff = approvals.signoff_of(session, request_id=request.id or 0, member_id=member.id or 0)
    return signoff.side if signoff else ""


def _command(subject: str) -> str:
    return "leaddef propose" if subject == ApprovalSubject.leaddef else "sla propose"


# ---------------------------------------------------------------- /approvals


def approvals_command(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`approvals`, `approvals ID`, `approvals set --sales … --marketing …`."""
    verb, _, rest = interaction.text.strip().partition(" ")
    if not verb:
        return overview(ctx, interaction)
    if verb.lower() == "set":
        return set_in_chat(ctx, interaction, rest)
    if verb.lstrip("#").isdigit():
        return history(ctx, interaction, int(verb.lstrip("#")))
    return private(text_for("approvals_usage"))


def overview(ctx: Context, interaction: Interaction) -> list[Effect]:
    """Who the approvers are, what I proposed, then a card per request waiting on me."""
    actor = interaction.actor
    tz = actor.timezone or ctx.company.tz
    waiting = approvals.waiting_for(ctx.session, member_id=actor.id or 0)
    mine = approvals.proposed_by(ctx.session, member_id=actor.id or 0)
    names = approvals.approver_names(ctx.session)
    fields = [
        Fact(
            text_for("approvals_label_side", side=side),
            ", ".join(names[side]) or text_for("approvals_none_set"),
        )
        for side in approvals.SIDES
    ]
    fields += [
        Fact(
            text_for("approvals_label_request", id=r.id, subject=subject_name(r.subject)),
            status_line(ctx.session, r, tz),
        )
        for r in mine
    ]
    summary = Card(
        title=text_for("approvals_overview_title"),
        text=text_for("approvals_overview_text", waiting=len(waiting), proposed=len(mine)),
        fields=tuple(fields),
        context=text_for("approvals_overview_context"),
    )
    return [Reply(summary), *(Reply(ask_card(ctx.session, r, tz=tz)) for r in waiting)]


def status_line(session: Session, request: ApprovalRequest, tz: str) -> str:
    """Where a request stands, in a line."""
    signoffs = approvals.signoffs_of(session, request_id=request.id or 0)
    rejected_by = [m.name for s, m in signoffs if s.decision == ApprovalStatus.rejected]
    return text_for(
        "approvals_status_line",
        status=request.status,
        version=request.version,
        waiting=[m.name for s, m in signoffs if s.decision is None],
        signed=sum(1 for s, _ in signoffs if s.decision is not None),
        total=len(signoffs),
        rejected_by=rejected_by,
        at=when(request.decided_at or request.created_at, tz),
    )


def history(ctx: Context, interaction: Interaction, request_id: int) -> list[Effect]:
    """`approvals ID`: the change, who proposed it, and every sign-off with its comment."""
    request = approvals.get_request(ctx.session, request_id=request_id)
    if request is None:
        return private(text_for("approvals_not_found", id=request_id))
    actor = interaction.actor
    tz = actor.timezone or ctx.company.tz
    signoffs = approvals.signoffs_of(ctx.session, request_id=request_id)
    lines = [
        Fact(
            text_for("approvals_named", name=m.name, side=s.side),
            text_for(
                "approvals_signoff_line",
                decision=s.decision,
                at=when(s.decided_at, tz) if s.decided_at else "",
                comment=s.comment,
                closed=request.status != ApprovalStatus.pending,
            ),
        )
        for s, m in signoffs
    ]
    mine = next((s for s, m in signoffs if m.id == actor.id), None)
    can_decide = (
        request.status == ApprovalStatus.pending and mine is not None and mine.decision is None
    )
    card = Card(
        title=text_for(
            "approvals_history_title",
            id=request.id,
            subject=subject_name(request.subject),
            status=request.status,
            version=request.version,
        ),
        text=text_for(
            "approvals_history_text",
            status=request.status,
            proposer=proposer_of(ctx.session, request),
            at=when(request.created_at, tz),
            decided=when(request.decided_at, tz) if request.decided_at else "",
            base=request.payload.get("base_version"),
            version=request.version,
            note=request.note,
        ),
        fields=(*change_fields(request), *lines),
        context=text_for(
            "approvals_history_context", status=request.status, reminders=request.reminders
        ),
        buttons=decision_buttons(request) if can_decide else (),
    )
    return [Reply(card)]
