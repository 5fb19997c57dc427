"""A realistic, reproducible demo company: members, campaigns, leads and their history."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import Session

from digests import sla
from digests.business_time import Company
from storage import queries
from storage.db import Store
from storage.models import EventKind, Lead, LeadState

MEMBERS = [
    # handle-ish name, email, role, team, manager email, time zone
    ("Dave Dawson", "dave@demo.liaison.dev", "manager", "sales", None, "Europe/London"),
    ("Maya Moreno", "maya@demo.liaison.dev", "manager", "marketing", None, "Europe/London"),
    (
        "Alice Adams",
        "alice@demo.liaison.dev",
        "rep",
        "sales",
        "dave@demo.liaison.dev",
        "Europe/London",
    ),
    (
        "Bob Brown",
        "bob@demo.liaison.dev",
        "rep",
        "sales",
        "dave@demo.liaison.dev",
        "America/New_York",
    ),
    (
        "Carol Chen",
        "carol@demo.liaison.dev",
        "marketer",
        "marketing",
        "maya@demo.liaison.dev",
        "Europe/London",
    ),
    (
        "Mark Miller",
        "mark@demo.liaison.dev",
        "marketer",
        "marketing",
        "maya@demo.liaison.dev",
        "America/New_York",
    ),
    ("Erin Ellis", "erin@demo.liaison.dev", "admin", None, None, "Europe/London"),
    ("Leo Lang", "leo@demo.liaison.dev", "leader", None, None, "Europe/London"),
]
CAMPAIGNS = {
    "Webinar: Pipeline Hygiene": "carol@demo.liaison.dev",
    "Ebook: The Buyer's Guide": "carol@demo.liaison.dev",
    "Paid search: CRM alternatives": "mark@demo.liaison.dev",
    "Trade show: SaaS Connect": "mark@demo.liaison.dev",
}
FIRST = [
    "Jordan",
    "Priya",
    "Lukas",
    "Sofia",
    "Tom",
    "Aiko",
    "Mateo",
    "Grace",
    "Noah",
    "Lena",
    "Omar",
    "Chloe",
    "Ivan",
    "Zoe",
    "Ravi",
    "Emma",
    "Felix",
    "Hana",
    "Luis",
    "Mia",
]
LAST = [
    "Patel",
    "Schmidt",
    "Rossi",
    "Nguyen",
    "Okafor",
    "Tanaka",
    "Garcia",
    "Murphy",
    "Kowalski",
    "Silva",
    "Haddad",
    "Larsen",
    "Dubois",
    "Novak",
    "Kim",
    "Walsh",
    "Moreau",
    "Ito",
]
COMPANIES = [
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Logistics",
    "Hooli",
    "Vandelay Imports",
    "Acme Retail",
    "Wayne Foods",
    "Cyberdyne",
    "Soylent",
    "Tyrell",
]
TITLES = [
    "VP Sales",
    "Head of Marketing",
    "Operations Manager",
    "CTO",
    "Sales Director",
    "Marketing Coordinator",
    "Founder",
    "RevOps Lead",
    "Procurement Officer",
    "Intern",
]
SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]


def create_demo(
    session: Session,
    *,
    leads: int,
    seed: int,
    now: datetime,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Fill the database; returns how many leads were new. Re-running adds nothing."""
    rng = random.Random(seed)
    for name, email, role, team, _, tz in MEMBERS:
        queries.upsert_member(
            session, now=now, email=email, name=name, role=role, team=team, timezone=tz
        )
    for _, email, _, _, manager_email, _ in MEMBERS:
        if manager_email:
            manager = queries.member_by(session, email=manager_email)
            member = queries.member_by(session, email=email)
            if member and manager:
                member.manager_id = manager.id
                session.add(member)
    for campaign_name, marketer_email in CAMPAIGNS.items():
        campaign = queries.ensure_campaign(session, name=campaign_name)
        marketer = queries.member_by(session, email=marketer_email)
        campaign.marketer_id = marketer.id if marketer else None
        session.add(campaign)
    definition, criteria = queries.current_definition(session)
    reps = [queries.member_by(session, email=e) for _, e, r, *_ in MEMBERS if r == "rep"]
    created = 0
    for i in range(leads):
        external_id = f"demo-{seed}-{i:06d}"
        # Draw every random value even for existing leads, so the sequence is stable.
        first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
        campaign_name = rng.choice(list(CAMPAIGNS))
        owner = reps[i % len(reps)]
        age = (
            timedelta(hours=rng.uniform(1, 21 * 24))
            if i >= len(reps) * 3
            else timedelta(minutes=rng.uniform(5, 240))
        )
        title, size = rng.choice(TITLES), rng.choice(SIZES)
        fate = rng.random()
        if queries.find_lead(session, source="demo", external_id=external_id) is not None:
            progress(1)
            continue
        assert owner is not None
        campaign = queries.ensure_campaign(session, name=campaign_name)
        handed = now - age
        lead = Lead(
            source="demo",
            external_id=external_id,
            name=f"{first} {last}",
            company=company,
            email=f"{first}.{last}@{company.split()[0].lower()}.example".lower(),
            title=title,
            campaign_id=campaign.id,
            owner_id=owner.id,
            owner_email=owner.email,
            definition_id=definition.id or 0,
            state=LeadState.handed_off.value,
            attributes={"company_size": size, "country": rng.choice(["UK", "US", "DE", "FR"])},
            created_at=handed - timedelta(minutes=3),
            handed_off_at=handed,
        )
        session.add(lead)
        session.flush()
        lead_id = lead.id or 0
        queries.add_event(session, lead_id=lead_id, kind=EventKind.ingested, now=lead.created_at)
        queries.add_event(
            session, lead_id=lead_id, kind=EventKind.handed_off, now=handed, member_id=owner.id
        )
        sla.on_handoff(session, lead, handed)
        if age > timedelta(hours=6):
            _history(
                session,
                rng,
                lead,
                fate,
                now=now,
                criteria=[c.key for c in criteria],
                texts={c.key: c.text for c in criteria},
                version=definition.version,
            )
        created += 1
        progress(1)
    return created


def _history(
    session: Session,
    rng: random.Random,
    lead: Lead,
    fate: float,
    *,
    now: datetime,
    criteria: list[str],
    texts: dict[str, str],
    version: int,
) -> None:
    """An older lead has been worked: accepted with attempts, or flagged not a fit."""
    at = (lead.handed_off_at or lead.created_at) + timedelta(minutes=rng.uniform(10, 600))
    lead_id = lead.id or 0
    if fate < 0.3:
        picked = rng.sample(criteria, k=rng.choice([1, 1, 2]))
        queries.add_event(
            session,
            lead_id=lead_id,
            kind=EventKind.not_a_fit,
            now=at,
            member_id=lead.owner_id,
            data={
                "criteria": picked,
                "criteria_text": [texts[k] for k in picked],
                "comment": "",
                "definition_version": version,
            },
        )
        lead.state = LeadState.not_a_fit.value
        sla.on_not_a_fit(session, lead, at, Company())
    else:
        queries.add_event(
            session, lead_id=lead_id, kind=EventKind.accepted, now=at, member_id=lead.owner_id
        )
        lead.state = LeadState.accepted.value
        sla.on_accepted(session, lead, at, Company())
        for _ in range(rng.randint(1, 6)):
            at += timedelta(hours=rng.uniform(2, 48))
            if at >= now:
                break
            outcome = rng.choice(
                ["no_answer", "no_answer", "left_message", "connected", "meeting_booked"]
            )
            queries.add_event(
                session,
                lead_id=lead_id,
                kind=EventKind.attempt_logged,
                now=at,
                member_id=lead.owner_id,
                data={
                    "channel": rng.choice(["call", "email", "social"]),
                    "outcome": outcome,
                    "note": "",
                },
            )
            sla.on_attempt(session, lead, at, Company())
    session.add(lead)


def settle_history(store: Store, *, now: datetime, company: Company) -> int:
    """Bring the demo's clocks up to `now`: the reminders and escalations of its invented
    past are recorded as delivered then, so only what happens from now on is sent."""
    sla.tick(store, now=now, company=company)
    with store.session() as session:
        return queries.mark_history_delivered(session, now=now)
