"""Field feedback: requests, their questions, who was asked and what they answered.

Non-blocking by design: nothing else in Liaison reads these tables to decide anything, and
nothing here touches another capability's tables (approvals live apart). Keyword-only
functions taking the session first; every figure of a summary is SQL (GROUP BY).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    cast,
    distinct,
    func,
    or_,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from storage.models import (
    Campaign,
    FeedbackAnswer,
    FeedbackQuestion,
    FeedbackRecipient,
    FeedbackRequest,
    Lead,
    Member,
    QuestionKind,
    Role,
)

ALL = "all"
CAMPAIGN = "campaign"
TEAM_PREFIX = "team:"
RATINGS = (1, 2, 3, 4, 5)


# ---------------------------------------------------------------- typed results


@dataclass(frozen=True)
class NewQuestion:
    """A question as the requester wrote it (validated by the handler)."""

    kind: str  # QuestionKind
    text: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuestionSummary:
    """The answers to one question, aggregated: ratings 1–5 with their mean, the count of
    each choice (every option, in the requester's order), or the text answers as quotes."""

    question_id: int
    position: int
    kind: str
    text: str
    answered: int
    ratings: tuple[tuple[int, int], ...] = ()  # (rating, count) for 1..5
    mean: float | None = None
    choices: tuple[tuple[str, int], ...] = ()  # (option, count)
    quotes: tuple[str, ...] = ()  # unattributed, oldest first


@dataclass(frozen=True)
class FeedbackSummary:
    """A request's outcome so far (or at its close), reusable by the weekly digest."""

    request_id: int
    requester_id: int
    about: str
    subject: str
    link: str | None
    campaign: str | None
    audience: str
    created_at: datetime
    deadline: datetime
    closed_at: datetime | None
    asked: int
    responded: int
    questions: tuple[QuestionSummary, ...]

    @property
    def response_rate(self) -> float | None:
        """Answered / asked, or None when nobody was asked."""
        return self.responded / self.asked if self.asked else None


@dataclass(frozen=True)
class RequestLine:
    """One of a requester's requests with its response count (for `/feedback list`)."""

    request_id: int
    subject: str
    deadline: datetime
    closed_at: datetime | None
    asked: int
    responded: int


@dataclass(frozen=True)
class Waiting:
    """An open request a member was asked and has not fully answered (for the home view)."""

    request_id: int
    requester_id: int
    subject: str
    deadline: datetime
    questions: int
    answered: int


@dataclass(frozen=True)
class WeekStats:
    """The feedback loop over one week: requests sent, how many people answered them, and
    requests closed (for the weekly digest)."""

    sent: int
    asked: int
    responded: int
    closed: int

    @property
    def response_rate(self) -> float | None:
        return self.responded / self.asked if self.asked else None


# ---------------------------------------------------------------- the audience


def teams(session: Session) -> list[tuple[str, int]]:
    """The teams that exist among members, with how many people are in each."""
    rows = session.exec(
        select(Member.team, func.count())
        .where(col(Member.team).is_not(None), Member.team != "")
        .group_by(col(Member.team))
        .order_by(col(Member.team))
    ).all()
    return [(str(team), int(count)) for team, count in rows]


def rep_count(session: Session) -> int:
    return int(
        session.exec(select(func.count()).select_from(Member).where(Member.role == Role.rep)).one()
    )


def audience_members(
    session: Session, *, audience: str, campaign_id: int | None, exclude: int | None
) -> list[int]:
    """Who an audience means right now: all reps, the members of a team, or the owners of
    a campaign's leads; never `exclude` (the requester)."""
    if audience == ALL:
        query = select(Member.id).where(Member.role == Role.rep)
    elif audience.startswith(TEAM_PREFIX):
        query = select(Member.id).where(Member.team == audience.removeprefix(TEAM_PREFIX))
    elif audience == CAMPAIGN and campaign_id is not None:
        query = (
            select(Member.id)
            .join(Lead, col(Lead.owner_id) == col(Member.id))
            .where(Lead.campaign_id == campaign_id)
            .distinct()
        )
    else:
        return []
    if exclude is not None:
        query = query.where(Member.id != exclude)
    return [int(m) for m in session.exec(query.order_by(col(Member.id))).all() if m is not None]


def members(session: Session, *, ids: Sequence[int]) -> list[Member]:
    """The members with these ids, in id order (one query for a whole audience)."""
    if not ids:
        return []
    return list(
        session.exec(
            select(Member).where(col(Member.id).in_(list(ids))).order_by(col(Member.id))
        ).all()
    )


def any_campaign(session: Session) -> bool:
    return session.exec(select(Campaign.id).limit(1)).first() is not None


def campaign_named(session: Session, *, name: str) -> Campaign | None:
    """A campaign by its name, ignoring case and surrounding spaces."""
    return session.exec(
        select(Campaign).where(func.lower(Campaign.name) == name.strip().lower())
    ).first()


# ---------------------------------------------------------------- writing


def create_request(
    session: Session,
    *,
    requester_id: int,
    about: str,
    subject: str,
    link: str | None,
    campaign_id: int | None,
    audience: str,
    deadline: datetime,
    remind_at: datetime | None,
    questions: Sequence[NewQuestion],
    recipients: Sequence[int],
    now: datetime,
) -> FeedbackRequest:
    """Store a request, its questions and the audience as it is now (a snapshot)."""
    request = FeedbackRequest(
        requester_id=requester_id,
        about=about,
        subject=subject,
        link=link,
        campaign_id=campaign_id,
        audience=audience,
        deadline=deadline,
        remind_at=remind_at,
        created_at=now,
    )
    session.add(request)
    session.flush()
    request_id = request.id or 0
    for position, question in enumerate(questions, 1):
        session.add(
            FeedbackQuestion(
                request_id=request_id,
                position=position,
                kind=question.kind,
                text=question.text,
                options=list(question.options),
            )
        )
    for member_id in recipients:
        session.add(FeedbackRecipient(request_id=request_id, member_id=member_id))
    session.flush()
    return request


def save_answer(
    session: Session,
    *,
    request_id: int,
    question_id: int,
    member_id: int,
    value: str,
    now: datetime,
) -> FeedbackAnswer:
    """One answer per person per question: the first is inserted, later ones edit it."""
    existing = _answer(session, question_id=question_id, member_id=member_id)
    if existing is None:
        answer = FeedbackAnswer(
            request_id=request_id,
            question_id=question_id,
            member_id=member_id,
            value=value,
            answered_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(answer)
            return answer
        except IntegrityError:  # the same person's other submit got there first
            existing = _answer(session, question_id=question_id, member_id=member_id)
            if existing is None:
                raise
    existing.value, existing.updated_at = value, now
    session.add(existing)
    session.flush()
    return existing


def _answer(session: Session, *, question_id: int, member_id: int) -> FeedbackAnswer | None:
    return session.exec(
        select(FeedbackAnswer).where(
            FeedbackAnswer.question_id == question_id, FeedbackAnswer.member_id == member_id
        )
    ).first()


def close_request(
    session: Session, *, request_id: int, at: datetime, by: str
) -> FeedbackRequest | None:
    """Close an open request, once: a conditional UPDATE, so the deadline pass and a
    `/feedback close` racing each other cannot both close it. None if already closed."""
    result = session.execute(
        update(FeedbackRequest)
        .where(col(FeedbackRequest.id) == request_id, col(FeedbackRequest.closed_at).is_(None))
        .values(closed_at=at, closed_by=by, remind_at=None)
        .execution_options(synchronize_session=False)
    )
    request = session.get(FeedbackRequest, request_id)
    if request is not None:
        session.refresh(request)
    if getattr(result, "rowcount", 0) != 1:
        return None
    return request


def mark_reminded(
    session: Session, *, request_id: int, member_ids: Sequence[int], now: datetime
) -> None:
    """Record who was reminded, and that the request's one reminder round is done."""
    if member_ids:
        session.execute(
            update(FeedbackRecipient)
            .where(
                col(FeedbackRecipient.request_id) == request_id,
                col(FeedbackRecipient.member_id).in_(list(member_ids)),
            )
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(FeedbackRequest)
        .where(col(FeedbackRequest.id) == request_id)
        .values(remind_at=None)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------- reading one request


def get_request(session: Session, *, request_id: int, lock: bool = False) -> FeedbackRequest | None:
    """The request (locked for update with `lock`, so a close waits for an answer)."""
    query = select(FeedbackRequest).where(FeedbackRequest.id == request_id)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def questions_of(session: Session, *, request_id: int) -> list[FeedbackQuestion]:
    return list(
        session.exec(
            select(FeedbackQuestion)
            .where(FeedbackQuestion.request_id == request_id)
            .order_by(col(FeedbackQuestion.position))
        ).all()
    )


def is_recipient(session: Session, *, request_id: int, member_id: int) -> bool:
    return session.get(FeedbackRecipient, (request_id, member_id)) is not None


def recipient_ids(session: Session, *, request_id: int) -> list[int]:
    return [
        int(m)
        for m in session.exec(
            select(FeedbackRecipient.member_id)
            .where(FeedbackRecipient.request_id == request_id)
            .order_by(col(FeedbackRecipient.member_id))
        ).all()
    ]


def answers_of(session: Session, *, request_id: int, member_id: int) -> dict[int, str]:
    """A member's answers to a request, by question id (to pre-fill the form)."""
    rows = session.exec(
        select(FeedbackAnswer.question_id, FeedbackAnswer.value).where(
            FeedbackAnswer.request_id == request_id, FeedbackAnswer.member_id == member_id
        )
    ).all()
    return {int(q): str(v) for q, v in rows}


def not_fully_answered(session: Session, *, request_id: int) -> list[FeedbackRecipient]:
    """Recipients not yet reminded who have not answered every question."""
    questions = (
        select(func.count())
        .select_from(FeedbackQuestion)
        .where(FeedbackQuestion.request_id == request_id)
        .scalar_subquery()
    )
    answered = (
        select(FeedbackAnswer.member_id, func.count().label("n"))
        .where(FeedbackAnswer.request_id == request_id)
        .group_by(col(FeedbackAnswer.member_id))
        .subquery()
    )
    return list(
        session.exec(
            select(FeedbackRecipient)
            .outerjoin(answered, answered.c.member_id == FeedbackRecipient.member_id)
            .where(
                FeedbackRecipient.request_id == request_id,
                col(FeedbackRecipient.reminded_at).is_(None),
                func.coalesce(answered.c.n, 0) < questions,
            )
            .order_by(col(FeedbackRecipient.member_id))
        ).all()
    )


# ---------------------------------------------------------------- due work (the scheduler)


def _due_condition() -> ColumnElement[bool]:
    now: BindParameter[datetime] = bindparam("now")
    return and_(
        col(FeedbackRequest.closed_at).is_(None),
        or_(col(FeedbackRequest.deadline) <= now, col(FeedbackRequest.remind_at) <= now),
    )


@cache
def _due_query(limit: int) -> SelectOfScalar[FeedbackRequest]:
    """Built once per limit with `now` as a parameter (see clocks._due_clocks_query)."""
    return (
        select(FeedbackRequest)
        .where(_due_condition())
        .order_by(col(FeedbackRequest.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def any_due_request(session: Session, *, now: datetime) -> bool:
    """Whether any open request is due for its reminder or its close (cheap probe)."""
    found = session.exec(
        select(FeedbackRequest.id).where(_due_condition()).limit(1),
        params={"now": now},
    ).first()
    return found is not None


def due_requests(session: Session, *, now: datetime, limit: int) -> list[FeedbackRequest]:
    """Open requests whose reminder or deadline is due, locked for this transaction;
    `FOR UPDATE SKIP LOCKED` lets several instances tick at once on PostgreSQL."""
    return list(session.exec(_due_query(limit), params={"now": now}).all())


# ---------------------------------------------------------------- aggregates


def _counts(session: Session, request_id: int) -> tuple[int, int]:
    """(asked, responded) for one request."""
    asked = session.exec(
        select(func.count())
        .select_from(FeedbackRecipient)
        .where(FeedbackRecipient.request_id == request_id)
    ).one()
    responded = session.exec(
        select(func.count(distinct(col(FeedbackAnswer.member_id)))).where(
            FeedbackAnswer.request_id == request_id
        )
    ).one()
    return int(asked), int(responded)


def summary(session: Session, *, request_id: int) -> FeedbackSummary | None:
    """The request's figures: response rate, per question the rating distribution and
    mean, the choice counts, and the text answers as unattributed quotes."""
    request = session.get(FeedbackRequest, request_id)
    if request is None:
        return None
    questions = questions_of(session, request_id=request_id)
    answered = dict(
        session.exec(
            select(FeedbackAnswer.question_id, func.count())
            .where(FeedbackAnswer.request_id == request_id)
            .group_by(col(FeedbackAnswer.question_id))
        ).all()
    )
    values: dict[tuple[int, str], int] = {}
    for question_id, value, count in session.exec(
        select(FeedbackAnswer.question_id, FeedbackAnswer.value, func.count())
        .join(FeedbackQuestion, col(FeedbackQuestion.id) == col(FeedbackAnswer.question_id))
        .where(
            FeedbackAnswer.request_id == request_id,
            col(FeedbackQuestion.kind).in_([QuestionKind.rating, QuestionKind.choice]),
        )
        .group_by(col(FeedbackAnswer.question_id), col(FeedbackAnswer.value))
    ).all():
        values[(int(question_id), str(value))] = int(count)
    means = {
        int(question_id): float(mean)
        for question_id, mean in session.exec(
            select(FeedbackAnswer.question_id, func.avg(cast(FeedbackAnswer.value, Integer)))
            .join(FeedbackQuestion, col(FeedbackQuestion.id) == col(FeedbackAnswer.question_id))
            .where(
                FeedbackAnswer.request_id == request_id,
                FeedbackQuestion.kind == QuestionKind.rating,
            )
            .group_by(col(FeedbackAnswer.question_id))
        ).all()
        if mean is not None
    }
    quotes: dict[int, list[str]] = {}
    for question_id, value in session.exec(
        select(FeedbackAnswer.question_id, FeedbackAnswer.value)
        .join(FeedbackQuestion, col(FeedbackQuestion.id) == col(FeedbackAnswer.question_id))
        .where(FeedbackAnswer.request_id == request_id, FeedbackQuestion.kind == QuestionKind.text)
        .order_by(col(FeedbackAnswer.answered_at), col(FeedbackAnswer.id))
    ).all():
        quotes.setdefault(int(question_id), []).append(str(value))
    asked, responded = _counts(session, request_id)
    campaign = session.get(Campaign, request.campaign_id) if request.campaign_id else None
    return FeedbackSummary(
        request_id=request_id,
        requester_id=request.requester_id,
        about=request.about,
        subject=request.subject,
        link=request.link,
        campaign=campaign.name if campaign else None,
        audience=request.audience,
        created_at=request.created_at,
        deadline=request.deadline,
        closed_at=request.closed_at,
        asked=asked,
        responded=responded,
        questions=tuple(
            _question_summary(q, int(answered.get(q.id or 0, 0)), values, means, quotes)
            for q in questions
        ),
    )


def _question_summary(
    question: FeedbackQuestion,
    answered: int,
    values: dict[tuple[int, str], int],
    means: dict[int, float],
    quotes: dict[int, list[str]],
) -> QuestionSummary:
    qid = question.id or 0
    base = QuestionSummary(qid, question.position, question.kind, question.text, answered)
    if question.kind == QuestionKind.rating:
        ratings = tuple((r, values.get((qid, str(r)), 0)) for r in RATINGS)
        return replace(base, ratings=ratings, mean=means.get(qid))
    if question.kind == QuestionKind.choice:
        choices = tuple((o, values.get((qid, o), 0)) for o in question.options)
        return replace(base, choices=choices)
    return replace(base, quotes=tuple(quotes.get(qid, ())))


def requests_of(session: Session, *, requester_id: int, limit: int = 10) -> list[RequestLine]:
    """A requester's newest requests, each with how many were asked and have answered."""
    asked = (
        select(FeedbackRecipient.request_id, func.count().label("n"))
        .group_by(col(FeedbackRecipient.request_id))
        .subquery()
    )
    responded = (
        select(
            FeedbackAnswer.request_id,
            func.count(distinct(col(FeedbackAnswer.member_id))).label("n"),
        )
        .group_by(col(FeedbackAnswer.request_id))
        .subquery()
    )
    rows = session.execute(
        sa_select(
            col(FeedbackRequest.id),
            col(FeedbackRequest.subject),
            col(FeedbackRequest.deadline),
            col(FeedbackRequest.closed_at),
            func.coalesce(asked.c.n, 0),
            func.coalesce(responded.c.n, 0),
        )
        .outerjoin(asked, asked.c.request_id == FeedbackRequest.id)
        .outerjoin(responded, responded.c.request_id == FeedbackRequest.id)
        .where(col(FeedbackRequest.requester_id) == requester_id)
        .order_by(col(FeedbackRequest.id).desc())
        .limit(limit)
    ).all()
    return [
        RequestLine(int(rid or 0), str(subject), deadline, closed, int(a), int(r))
        for rid, subject, deadline, closed, a, r in rows
    ]


def waiting_for(session: Session, *, member_id: int, now: datetime) -> list[Waiting]:
    """Open requests `member_id` was asked and has not answered in full, soonest first."""
    questions = (
        select(FeedbackQuestion.request_id, func.count().label("n"))
        .group_by(col(FeedbackQuestion.request_id))
        .subquery()
    )
    answered = (
        select(FeedbackAnswer.request_id, func.count().label("n"))
        .where(FeedbackAnswer.member_id == member_id)
        .group_by(col(FeedbackAnswer.request_id))
        .subquery()
    )
    done = func.coalesce(answered.c.n, 0)
    rows = session.execute(
        sa_select(
            col(FeedbackRequest.id),
            col(FeedbackRequest.requester_id),
            col(FeedbackRequest.subject),
            col(FeedbackRequest.deadline),
            questions.c.n,
            done,
        )
        .join(FeedbackRecipient, col(FeedbackRecipient.request_id) == col(FeedbackRequest.id))
        .join(questions, questions.c.request_id == FeedbackRequest.id)
        .outerjoin(answered, answered.c.request_id == FeedbackRequest.id)
        .where(
            col(FeedbackRecipient.member_id) == member_id,
            col(FeedbackRequest.closed_at).is_(None),
            col(FeedbackRequest.deadline) > now,
            done < questions.c.n,
        )
        .order_by(col(FeedbackRequest.deadline), col(FeedbackRequest.id))
    ).all()
    return [
        Waiting(int(rid or 0), int(requester), str(subject), deadline, int(n), int(d))
        for rid, requester, subject, deadline, n, d in rows
    ]


def week_stats(session: Session, *, start: datetime, end: datetime) -> WeekStats:
    """Requests sent in [start, end), the people they asked and how many answered, and the
    requests closed in that span."""
    sent_ids = select(FeedbackRequest.id).where(
        FeedbackRequest.created_at >= start, FeedbackRequest.created_at < end
    )
    sent = session.exec(select(func.count()).select_from(sent_ids.subquery())).one()
    asked = session.exec(
        select(func.count())
        .select_from(FeedbackRecipient)
        .where(col(FeedbackRecipient.request_id).in_(sent_ids))
    ).one()
    pairs = (
        select(FeedbackAnswer.request_id, FeedbackAnswer.member_id)
        .where(col(FeedbackAnswer.request_id).in_(sent_ids))
        .distinct()
        .subquery()
    )
    responded = session.exec(select(func.count()).select_from(pairs)).one()
    closed = session.exec(
        select(func.count())
        .select_from(FeedbackRequest)
        .where(col(FeedbackRequest.closed_at) >= start, col(FeedbackRequest.closed_at) < end)
    ).one()
    return WeekStats(int(sent), int(asked), int(responded), int(closed))


def closed_between(
    session: Session, *, start: datetime, end: datetime, limit: int = 5
) -> list[int]:
    """Ids of the requests closed in [start, end), earliest first (digest highlights)."""
    return [
        int(i)
        for i in session.exec(
            select(FeedbackRequest.id)
            .where(col(FeedbackRequest.closed_at) >= start, col(FeedbackRequest.closed_at) < end)
            .order_by(col(FeedbackRequest.closed_at))
            .limit(limit)
        ).all()
        if i is not None
    ]
