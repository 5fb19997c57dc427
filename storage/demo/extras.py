"""The marketer's side of the demo company, as plain rows: content, buyer insights (many
answered with content), wins shared for won leads, field feedback with its answers, and
the approvals behind the lead-definition and SLA versions. A modest amount, whatever the
number of leads; each row is found by a natural key first, so running again adds nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random

from sqlmodel import Session

from storage.demo import reads as stored
from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    ApprovalStatus,
    ApprovalSubject,
    Approver,
    Campaign,
    ContentItem,
    FeedbackAnswer,
    FeedbackQuestion,
    FeedbackRecipient,
    FeedbackRequest,
    Insight,
    InsightStatus,
    LeadDefinition,
    Member,
    QuestionKind,
    SlaPolicy,
    Win,
)

SALES_APPROVER = "dave@demo.liaison.dev"
MARKETING_APPROVER = "maya@demo.liaison.dev"
CONTENT = (
    # title, slug, description, tags, stage
    ("The Buyer's Guide to Pipeline Tools", "buyers-guide", "What to compare, in 20 pages.",
     "guide,evaluation,ebook", "consideration"),
    ("Pipeline Hygiene webinar recording", "pipeline-hygiene", "The 45-minute session and Q&A.",
     "webinar,pipeline,crm", "awareness"),
    ("ROI calculator", "roi-calculator", "A spreadsheet buyers fill in with their own numbers.",
     "roi,pricing,business case", "decision"),
    ("Customer story: Acme Retail", "acme-retail", "How a 400-store retailer cut lead response.",
     "retail,case study,customer", "consideration"),
    ("Security and compliance FAQ", "security-faq", "SSO, data residency, SOC 2, retention.",
     "security,compliance,it,gdpr", "decision"),
    ("Pricing one-pager", "pricing", "Plans, seats and what each includes.",
     "pricing,plans,budget", "decision"),
    ("Integration overview for IT", "integrations", "CRM, marketing automation and SSO.",
     "integration,crm,it,api", "consideration"),
    ("Forecasting 101 slides", "forecasting-101", "The webinar deck, with speaker notes.",
     "forecasting,webinar,slides", "awareness"),
    ("Migration checklist: spreadsheets to CRM", "migration", "Two pages, step by step.",
     "migration,crm,onboarding", "retention"),
    ("Analyst report summary", "analyst-summary", "The market guide in one page.",
     "analyst,report,market", "awareness"),
)  # fmt: skip
INSIGHTS = (
    # kind, text, tags, the content that answers it (slug)
    ("question", "Buyers ask whether we support SSO with Okta.", ["security", "sso"],
     "security-faq"),
    ("objection", "Too expensive for teams under ten seats.", ["pricing"], "pricing"),
    ("question", "Can we import three years of spreadsheet history?", ["migration"], "migration"),
    ("request", "A retail case study would help with store chains.", ["retail"], "acme-retail"),
    ("objection", "They already pay for a CRM add-on that does this.", ["competition"],
     "buyers-guide"),
    ("question", "Where is customer data stored for EU accounts?", ["gdpr", "security"],
     "security-faq"),
    ("request", "A one-page ROI summary for finance teams.", ["roi"], "roi-calculator"),
    ("question", "Does it work with our marketing automation tool?", ["integration"],
     "integrations"),
    ("other", "Several trade-show contacts were students.", ["events"], ""),
    ("objection", "Forecasting feels like a nice-to-have this year.", ["forecasting"],
     "forecasting-101"),
    ("question", "What does onboarding take for 50 users?", ["onboarding"], "migration"),
    ("request", "Slides from the analyst report for a board meeting.", ["analyst"],
     "analyst-summary"),
)  # fmt: skip
ANSWERS = (
    "Here is the page that covers it; send it before the next call.",
    "Answered in the attached asset, section 2.",
    "Yes — the linked piece has the details buyers ask for.",
)
FEEDBACK = (
    # about, subject, question texts
    ("campaign", "How did the Pipeline Hygiene webinar leads feel on the phone?"),
    ("asset", "Is the Buyer's Guide useful in first calls?"),
    ("message", "Does 'response time is revenue' land with buyers?"),
    ("campaign", "Were the trade-show contacts worth the follow-up?"),
    ("asset", "The ROI calculator: do buyers fill it in?"),
    ("campaign", "Paid search leads: the right people?"),
    ("message", "Is the new pricing page wording clear?"),
    ("asset", "Security FAQ: what is missing?"),
    ("campaign", "LinkedIn ads: how senior are the leads?"),
    ("asset", "The retail customer story in calls"),
    ("message", "Forecasting as an opener: too early?"),
    ("campaign", "Free trial sign-ups: ready to talk?"),
)
REPLIES = (
    "Useful, buyers read it before the call.",
    "Mixed: good for larger accounts, too long for small ones.",
    "Would like a shorter version.",
    "Helped me get a second meeting.",
    "Not used it yet.",
)
STORIES = (
    "{company} signed after {attempts} touches; the {campaign} lead became a customer.",
    "Closed {company}: they came in through {campaign} and the follow-up kept it warm.",
)


@dataclass(frozen=True)
class Company:
    """What the rows refer to."""

    seed: int
    now: datetime
    start: datetime
    leads: int
    members: dict[str, Member]
    campaigns: list[Campaign]

    def people(self, role: str) -> list[Member]:
        return [m for m in self.members.values() if m.role == role]


def add(session: Session, company: Company) -> None:
    rng = Random(f"liaison-demo:{company.seed}:extras")
    _approvers(session, company.members)
    items = _content(session, rng, company)
    _insights(session, rng, company, items)
    _wins(session, rng, company)
    _feedback(session, rng, company)
    session.flush()


# ---------------------------------------------------------------- approvals


def _approvers(session: Session, members: dict[str, Member]) -> None:
    for email, side in ((SALES_APPROVER, "sales"), (MARKETING_APPROVER, "marketing")):
        member_id = members[email].id or 0
        if session.get(Approver, (member_id, side)) is None:
            session.add(Approver(member_id=member_id, side=side))


def approve_definition(
    session: Session,
    definition: LeadDefinition,
    criteria: Sequence[tuple[str, str]],
    members: dict[str, Member],
) -> None:
    """The request behind a new lead-definition version: proposed by a marketer, approved
    by both sides' approvers, in force when the last one signed."""
    decided = definition.created_at
    request = ApprovalRequest(
        subject=ApprovalSubject.leaddef.value,
        proposed_by=members["carol@demo.liaison.dev"].id,
        payload={"criteria": [{"key": k, "text": t} for k, t in criteria], "note": definition.note},
        note=definition.note,
        status=ApprovalStatus.approved.value,
        version=definition.version,
        created_at=decided - timedelta(days=3),
        decided_at=decided,
    )
    session.add(request)
    session.flush()
    for email, side, before, comment in (
        (MARKETING_APPROVER, "marketing", timedelta(days=2), "Matches what the field tells us."),
        (SALES_APPROVER, "sales", timedelta(0), "Agreed; the company size rule helps."),
    ):
        session.add(
            ApprovalSignoff(
                request_id=request.id or 0,
                member_id=members[email].id or 0,
                side=side,
                decision="approved",
                comment=comment,
                decided_at=decided - before,
            )
        )


def bootstrap_policy(session: Session, policy: SlaPolicy, fields: dict[str, object]) -> None:
    """An SLA version an admin set from the CLI, without sign-off."""
    session.add(
        ApprovalRequest(
            subject=ApprovalSubject.sla.value,
            proposer_label="admin (CLI)",
            payload={"fields": fields, "note": policy.note},
            note=policy.note,
            status=ApprovalStatus.bootstrap.value,
            version=policy.version,
            created_at=policy.created_at,
            decided_at=policy.created_at,
        )
    )


# ---------------------------------------------------------------- content and insights


def _spread(company: Company, share: float, jitter: float = 0.0) -> datetime:
    """A moment `share` of the way through the history."""
    span = company.now - company.start
    return company.start + span * min(0.999, max(0.0, share + jitter))


def _content(session: Session, rng: Random, company: Company) -> dict[str, ContentItem]:
    marketers = company.people("marketer")
    items: dict[str, ContentItem] = {}
    for n, (title, slug, description, tags, stage) in enumerate(CONTENT):
        link = f"https://demo.liaison.dev/content/{slug}"
        item = stored.first_where(session, ContentItem, link=link)
        if item is None:
            item = ContentItem(
                title=title,
                link=link,
                description=description,
                tags=tags,
                stage=stage,
                added_by=marketers[n % len(marketers)].id,
                created_at=_spread(company, n / (2 * len(CONTENT)), rng.uniform(0, 0.02)),
            )
            session.add(item)
        items[slug] = item
    session.flush()
    return items


def _insights(
    session: Session, rng: Random, company: Company, items: dict[str, ContentItem]
) -> None:
    """What reps heard from buyers; the older ones mostly closed with content."""
    reps, count = company.people("rep"), min(80, 8 + company.leads // 15_000)
    marketers = {m.id: m for m in company.people("marketer")}
    for n in range(count):
        kind, text, tags, slug = INSIGHTS[n % len(INSIGHTS)]
        author = reps[(n * 5 + n // len(INSIGHTS)) % len(reps)]
        campaign = company.campaigns[(n * 7) % len(company.campaigns)]
        created = _spread(company, (n + rng.random()) / count)
        row = stored.first_where(
            session, Insight, author_id=author.id, text=text, campaign_id=campaign.id
        )
        if row is not None:
            continue
        insight = Insight(
            author_id=author.id or 0,
            kind=kind,
            text=text,
            campaign_id=campaign.id,
            tags=list(tags),
            created_at=created,
        )
        marketer = marketers.get(campaign.marketer_id) or next(iter(marketers.values()))
        age = company.now - created
        claimed = created + timedelta(hours=rng.uniform(1, 24))
        closes = claimed + timedelta(days=rng.uniform(0.5, 5))
        chance = rng.random()
        if age > timedelta(days=3) and claimed < company.now and chance < 0.85:
            insight.status, insight.marketer_id, insight.claimed_at = (
                InsightStatus.claimed.value,
                marketer.id,
                claimed,
            )
            if closes < company.now and chance < (0.7 if age > timedelta(weeks=3) else 0.4):
                item = items.get(slug)
                insight.status, insight.closed_at = InsightStatus.closed.value, closes
                insight.answer = ANSWERS[n % len(ANSWERS)]
                if item is not None and item.created_at <= closes:
                    insight.content_id = item.id
        session.add(insight)


# ---------------------------------------------------------------- wins


def _wins(session: Session, rng: Random, company: Company) -> None:
    """Up to two wins shared a week, by the rep, for leads that were won."""
    names = {c.id: c for c in company.campaigns}
    week = timedelta(weeks=1)
    at = company.start
    while at < company.now:
        won = stored.won_leads(session, source="demo", since=at, until=at + week, limit=2)
        shared = stored.wins_for(session, lead_ids=[lead.id or 0 for lead in won])
        for lead in won:
            if lead.id in shared or lead.owner_id is None:
                continue
            campaign = names.get(lead.campaign_id)
            last = stored.last_attempt_at(session, lead_id=lead.id or 0) or at
            story = STORIES[(lead.id or 0) % len(STORIES)].format(
                company=lead.company or lead.name,
                attempts=lead.attempts,
                campaign=campaign.name if campaign else "a campaign",
            )
            session.add(
                Win(
                    author_id=lead.owner_id,
                    story=story,
                    lead_id=lead.id,
                    campaign_id=lead.campaign_id,
                    marketer_id=campaign.marketer_id if campaign else None,
                    created_at=min(company.now, last + timedelta(hours=rng.uniform(1, 4))),
                )
            )
        at += week


# ---------------------------------------------------------------- field feedback


def _feedback(session: Session, rng: Random, company: Company) -> None:
    """Requests from marketers to the reps, all past their deadline, with answers."""
    marketers, reps = company.people("marketer"), company.people("rep")
    count = min(len(FEEDBACK), 4 + company.leads // 100_000)
    for n in range(count):
        about, subject = FEEDBACK[n]
        requester = marketers[n % len(marketers)]
        if stored.first_where(session, FeedbackRequest, requester_id=requester.id, subject=subject):
            continue
        created = _spread(company, (n + 0.5) / count)
        created = min(created, company.now - timedelta(days=6))
        deadline = created + timedelta(days=3)
        request = FeedbackRequest(
            requester_id=requester.id or 0,
            about=about,
            subject=subject,
            campaign_id=company.campaigns[n % len(company.campaigns)].id
            if about == "campaign"
            else None,
            audience="team:sales",
            deadline=deadline,
            closed_at=deadline,
            closed_by="deadline",
            created_at=created,
        )
        session.add(request)
        session.flush()
        _questions_and_answers(session, rng, request, rng.sample(reps, min(len(reps), 15)))


def _questions_and_answers(
    session: Session, rng: Random, request: FeedbackRequest, asked: list[Member]
) -> None:
    rating = FeedbackQuestion(
        request_id=request.id or 0,
        position=0,
        kind=QuestionKind.rating.value,
        text="How useful is it with buyers (1 to 5)?",
    )
    comment = FeedbackQuestion(
        request_id=request.id or 0,
        position=1,
        kind=QuestionKind.text.value,
        text="What should we change?",
    )
    session.add_all([rating, comment])
    session.flush()
    span = (request.deadline - request.created_at).total_seconds()
    for member in sorted(asked, key=lambda m: m.id or 0):
        answers = rng.random() < 0.65
        reminded = None if answers else request.created_at + timedelta(days=2)
        session.add(
            FeedbackRecipient(
                request_id=request.id or 0, member_id=member.id or 0, reminded_at=reminded
            )
        )
        if not answers:
            continue
        at = request.created_at + timedelta(seconds=rng.uniform(0.05, 0.95) * span)
        for question, value in (
            (rating, str(rng.choices((2, 3, 4, 5), (1, 3, 4, 2))[0])),
            (comment, REPLIES[rng.randrange(len(REPLIES))]),
        ):
            session.add(
                FeedbackAnswer(
                    request_id=request.id or 0,
                    question_id=question.id or 0,
                    member_id=member.id or 0,
                    value=value,
                    answered_at=at,
                    updated_at=at,
                )
            )
