"""Storage on SQLite and on the real PostgreSQL: migrations, defaults, idempotency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import select

from bot.core.business_time import Company
from handlers.ingest import LeadIn, store_leads
from storage import definitions, members, requests
from storage import leads as stored_leads
from storage.db import Store
from storage.models import Lead, LeadEvent

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_fresh_database_has_the_default_definition(any_store: Store) -> None:
    with any_store.session() as s:
        definition, criteria = definitions.current_definition(s)
    assert definition.version == 1
    assert [c.key for c in criteria] == [
        "budget",
        "authority",
        "need",
        "timing",
        "territory",
        "valid_contact",
    ]


def test_new_definition_versions_count_up(any_store: Store) -> None:
    with any_store.session() as s:
        definitions.create_definition(s, criteria=[("a", "A")], note="", created_by="t", now=NOW)
        second = definitions.create_definition(
            s, criteria=[("b", "B")], note="", created_by="t", now=NOW
        )
    with any_store.session() as s:
        current, criteria = definitions.current_definition(s)
    assert second.version == current.version == 3 and [c.key for c in criteria] == ["b"]


def test_leads_are_stored_once_per_source_and_external_id(any_store: Store) -> None:
    items = [
        LeadIn(external_id="X1", name="A", source="web"),  # type: ignore[call-arg]
        LeadIn(external_id="X1", name="A again", source="web"),  # type: ignore[call-arg]
        LeadIn(external_id="X1", name="Other source", source="csv"),
    ]  # type: ignore[call-arg]
    with any_store.session() as s:
        outcomes, _ = store_leads(s, items, now=NOW, admin_channel=None, company=Company())
    assert [o.status for o in outcomes] == ["created", "duplicate", "created"]
    assert outcomes[0].lead_id == outcomes[1].lead_id
    with any_store.session() as s:
        again, _ = store_leads(s, items[:1], now=NOW, admin_channel=None, company=Company())
        assert again[0].status == "duplicate"
        assert s.exec(select(func.count()).select_from(Lead)).one() == 2
        events = s.exec(select(LeadEvent).where(LeadEvent.kind == "ingested")).all()
        assert len(events) == 2


def test_attributes_and_times_round_trip(any_store: Store) -> None:
    item = LeadIn.model_validate(
        {
            "external_id": "A1",
            "name": "N",
            "region": "EMEA",
            "score": 42,
            "created_at": "2026-11-20T10:00:00+01:00",
        }
    )
    with any_store.session() as s:
        (outcome,), _ = store_leads(s, [item], now=NOW, admin_channel=None, company=Company())
    with any_store.session() as s:
        lead = s.get(Lead, outcome.lead_id)
        assert lead is not None
        assert lead.attributes == {"region": "EMEA", "score": 42}  # typed JSON, as sent
        assert lead.created_at == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_a_request_id_is_claimed_once_even_by_racing_workers(any_store: Store) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        try:
            with any_store.session() as s:
                results.append(
                    requests.claim_request(s, platform="slack", request_id="Ev1", now=NOW)
                )
        except Exception:  # the loser of a commit race: the row already exists
            results.append(False)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_racing_verdicts_on_one_lead_have_one_winner(any_store: Store) -> None:
    """Two instances accepting the same lead at once: exactly one acceptance is recorded."""
    from app import build_router
    from bot.core.interaction import Interaction, Kind, Where
    from storage.models import Member

    with any_store.session() as s:
        members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice")
        (outcome,), _ = store_leads(
            s,
            [LeadIn(external_id="R1", name="Race", owner_email="alice@x.com")],  # type: ignore[call-arg]
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
        alice = s.exec(select(Member)).one()
    router = build_router()
    barrier = threading.Barrier(4)
    replies: list[str] = []

    def press() -> None:
        barrier.wait()
        interaction = Interaction(
            Kind.action, "lead.accept", alice, Where("test"), {"lead_id": str(outcome.lead_id)}
        )
        try:
            effects = router.dispatch(any_store, interaction, NOW)
            replies.append(type(effects[0]).__name__)
        except Exception as error:  # recorded, so a failure says what went wrong
            replies.append(repr(error))

    threads = [threading.Thread(target=press) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(replies) == ["Reply", "Reply", "Reply", "UpdateCards"]
    with any_store.session() as s:
        accepted = s.exec(select(LeadEvent).where(LeadEvent.kind == "accepted")).all()
        assert len(accepted) == 1


def test_the_migrations_build_exactly_the_models(any_store: Store) -> None:
    """Alembic's autogenerate finds nothing to do: no table, column or index of the models
    is missing from the migrations, nor the other way round."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from storage.db import include_in_autogenerate

    with any_store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_object": include_in_autogenerate}
        )
        assert compare_metadata(context, SQLModel.metadata) == []


def test_routing_leads_are_handed_to_their_owners_once(any_store: Store) -> None:
    """Leads of several owners move in one call, each only while it is still routing."""
    items = [
        LeadIn(external_id=f"R{n}", name=f"P{n}", owner_email=f"o{n % 2}@x.com")  # type: ignore[call-arg]
        for n in range(4)
    ]
    with any_store.session() as s:
        outcomes, _ = store_leads(
            s, items, now=NOW, admin_channel=None, company=Company(), route_unknown=True
        )
        owners = [
            members.upsert_member(s, now=NOW, email=f"o{n}@x.com", name=f"O{n}") for n in range(2)
        ]
    ids = [o.lead_id for o in outcomes]
    with any_store.session() as s:
        assert stored_leads.move_leads(s, lead_ids=ids[3:], to="unassigned", owner_id=None, now=NOW)
        moved = stored_leads.hand_leads(
            s, owners={lead_id: owners[n % 2].id or 0 for n, lead_id in enumerate(ids)}, now=NOW
        )
    assert moved == set(ids[:3])
    with any_store.session() as s:
        leads = [s.get(Lead, lead_id) for lead_id in ids]
        assert [(lead.state, lead.owner_id) for lead in leads if lead] == [
            ("handed_off", owners[0].id),
            ("handed_off", owners[1].id),
            ("handed_off", owners[0].id),
            ("unassigned", None),
        ]
        assert all(lead.handed_off_at is not None for lead in leads[:3] if lead)
