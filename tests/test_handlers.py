"""Handlers against a real SQLite file: the router dispatches interactions, and what a
person would notice (effects, cards, recorded facts) is checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import FormErrors, Notify, Owed, Reply, ShowForm, UpdateCards
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import card_from_dict
from handlers.ingest import LeadIn, store_leads
from storage import campaigns, definitions, members
from storage import leads as stored_leads
from storage.db import Store
from storage.models import EventKind, Lead, Member
from tests.support import owed

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
router = build_router()


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        dave = members.upsert_member(s, now=NOW, email="dave@x.com", name="Dave", role="manager")
        alice = members.upsert_member(
            s, now=NOW, email="alice@x.com", name="Alice", manager_id=dave.id
        )
        bob = members.upsert_member(s, now=NOW, email="bob@x.com", name="Bob")
        carol = members.upsert_member(
            s, now=NOW, email="carol@x.com", name="Carol", role="marketer"
        )
        campaign = campaigns.ensure_campaign(s, name="Webinar")
        campaign.marketer_id = carol.id
        s.add(campaign)
        return {"alice": alice, "bob": bob, "carol": carol, "dave": dave}


def new_lead(store: Store, external_id: str = "L1", owner: str = "alice@x.com") -> int:
    with store.session() as s:
        outcomes, _ = store_leads(
            s,
            [
                LeadIn(
                    external_id=external_id,
                    name="Jordan <b>",
                    campaign="Webinar",
                    owner_email=owner,
                )
            ],  # type: ignore[call-arg]
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
    return outcomes[0].lead_id


def act(
    store: Store,
    who: Member,
    kind: Kind,
    name: str,
    *,
    at: datetime = NOW,
    request_id: str = "",
    values: dict[str, list[str]] | None = None,
    **args: str,
) -> list[object]:
    interaction = Interaction(
        kind, name, who, Where("test", "D1"), args=args, values=values or {}, request_id=request_id
    )
    return list(router.dispatch(store, interaction, at))


def lead(store: Store, lead_id: int) -> Lead:
    with store.session() as s:
        found = s.get(Lead, lead_id)
        assert found is not None
        return found


def test_a_new_lead_is_handed_to_its_owner(sqlite_store: Store, people: dict[str, Member]) -> None:
    with sqlite_store.session() as s:
        outcomes, effects = store_leads(
            s,
            [
                LeadIn(
                    external_id="L1",
                    name="Jordan",
                    owner_email="ALICE@x.com",
                    campaign="Webinar",
                    region="EMEA",
                )
            ],  # type: ignore[call-arg]
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
    (notify,) = effects
    assert isinstance(notify, Notify) and notify.member_id == people["alice"].id
    assert [b.label for b in notify.card.buttons] == [
        "Accept",
        "Not a fit",
        "Need info",
        "Log attempt",
        "Share insight",
    ]
    assert ("region", "EMEA") in [(f.label, f.value) for f in notify.card.fields]
    assert "lead definition v1" in notify.card.context
    assert lead(sqlite_store, outcomes[0].lead_id).state == "handed_off"


def test_accept_updates_the_card_once(sqlite_store: Store, people: dict[str, Member]) -> None:
    lead_id = new_lead(sqlite_store)
    (update,) = act(sqlite_store, people["alice"], Kind.action, "lead.accept", lead_id=str(lead_id))
    assert isinstance(update, UpdateCards) and "Accepted by Alice" in update.card.text
    assert "Accept" not in [b.label for b in update.card.buttons]
    (again,) = act(sqlite_store, people["alice"], Kind.action, "lead.accept", lead_id=str(lead_id))
    assert isinstance(again, Reply) and "already accepted" in again.card.text
    with sqlite_store.session() as s:
        assert stored_leads.count_events(s, lead_id=lead_id, kind=EventKind.accepted) == 1


def test_strangers_are_told_whose_lead_it_is(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    lead_id = new_lead(sqlite_store)
    (reply,) = act(sqlite_store, people["bob"], Kind.action, "lead.accept", lead_id=str(lead_id))
    assert isinstance(reply, Reply) and "belongs to Alice" in reply.card.text
    assert lead(sqlite_store, lead_id).state == "handed_off"
    (update,) = act(sqlite_store, people["dave"], Kind.action, "lead.accept", lead_id=str(lead_id))
    assert isinstance(update, UpdateCards) and "Accepted by Dave" in update.card.text


def test_not_a_fit_needs_criteria_of_the_current_definition(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    lead_id = new_lead(sqlite_store)
    (form,) = act(
        sqlite_store, people["alice"], Kind.action, "lead.not_a_fit", lead_id=str(lead_id)
    )
    assert isinstance(form, ShowForm)
    assert [o.value for o in form.form.inputs[0].options][:2] == ["budget", "authority"]
    state = form.form.state
    rid = f"form:{state['nonce']}"
    (errors,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.not_a_fit",
        request_id=rid,
        values={"criteria": ["made_up"]},
        **state,
    )
    assert isinstance(errors, FormErrors) and "criteria" in errors.errors
    (update,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.not_a_fit",
        request_id=rid,
        values={"criteria": ["budget", "timing"], "comment": ["Too early"]},
        **state,
    )
    assert isinstance(update, UpdateCards)
    assert "Budget confirmed or likely, Buying within the next two quarters" in update.card.text
    assert "Too early" in update.card.text and update.card.buttons == ()
    # The same submission again is ignored; a later verdict is refused politely.
    assert (
        act(
            sqlite_store,
            people["alice"],
            Kind.form,
            "lead.not_a_fit",
            request_id=rid,
            values={"criteria": ["budget"]},
            **state,
        )
        == []
    )
    (refusal,) = act(
        sqlite_store, people["alice"], Kind.action, "lead.accept", lead_id=str(lead_id)
    )
    assert isinstance(refusal, Reply) and "not a fit" in refusal.card.text


def test_a_new_definition_version_is_what_reps_pick_from(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    with sqlite_store.session() as s:
        definition = definitions.create_definition(
            s,
            criteria=[("icp", "Matches the ideal customer profile")],
            note="v2",
            created_by="test",
            now=NOW,
        )
    assert definition.version == 2
    lead_id = new_lead(sqlite_store)
    (form,) = act(
        sqlite_store, people["alice"], Kind.action, "lead.not_a_fit", lead_id=str(lead_id)
    )
    assert isinstance(form, ShowForm)
    assert [o.value for o in form.form.inputs[0].options] == ["icp"]


def test_need_info_round_trip(sqlite_store: Store, people: dict[str, Member]) -> None:
    lead_id = new_lead(sqlite_store)
    (form,) = act(
        sqlite_store, people["alice"], Kind.action, "lead.need_info", lead_id=str(lead_id)
    )
    assert isinstance(form, ShowForm)
    (empty,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.need_info",
        values={"question": ["  "]},
        **form.form.state,
    )
    assert isinstance(empty, FormErrors)
    update, sent, marker = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.need_info",
        values={"question": ["Budget owner?"]},
        **form.form.state,
    )
    assert isinstance(update, UpdateCards) and "waiting for Carol" in str(update.card.fields)
    assert isinstance(sent, Reply) and "Carol" in sent.card.text
    # The question is owed to Carol through the outbox, in the same transaction.
    assert marker == Owed(1)
    (ask,) = owed(sqlite_store, people["carol"].id)
    assert ask.purpose.startswith("question:") and ask.lead_id == lead_id
    answer_button = card_from_dict(ask.card).buttons[0]
    question = answer_button.value.split("=", 1)[1]
    (refused,) = act(sqlite_store, people["bob"], Kind.action, "question.answer", question=question)
    assert isinstance(refused, Reply) and "sent to Carol" in refused.card.text
    (answer_form,) = act(
        sqlite_store, people["carol"], Kind.action, "question.answer", question=question
    )
    assert isinstance(answer_form, ShowForm)
    effects = act(
        sqlite_store,
        people["carol"],
        Kind.form,
        "question.answer",
        values={"answer": ["The CFO"]},
        **answer_form.form.state,
    )
    assert Owed(1) in effects
    (back,) = owed(sqlite_store, people["alice"].id)
    assert back.in_thread and back.lead_id == lead_id
    assert "The CFO" in str(card_from_dict(back.card).fields)
    handoff = next(e for e in effects if isinstance(e, UpdateCards) and e.purpose == "handoff")
    assert "Carol answered" in str(handoff.card.fields)


def test_attempts_are_counted_and_validated(sqlite_store: Store, people: dict[str, Member]) -> None:
    lead_id = new_lead(sqlite_store)
    for n, channel in enumerate(["call", "email"], 1):
        (form,) = act(
            sqlite_store, people["alice"], Kind.action, "lead.log_attempt", lead_id=str(lead_id)
        )
        assert isinstance(form, ShowForm)
        (update,) = act(
            sqlite_store,
            people["alice"],
            Kind.form,
            "lead.log_attempt",
            at=NOW + timedelta(hours=n),
            values={"channel": [channel], "outcome": ["no_answer"]},
            **form.form.state,
        )
        assert isinstance(update, UpdateCards)
    assert "2 so far" in str(update.card.fields) and "Email" in str(update.card.fields)
    (bad,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.log_attempt",
        values={"channel": ["pigeon"], "outcome": ["no_answer"]},
        **form.form.state,
    )
    assert isinstance(bad, FormErrors) and "channel" in bad.errors


def test_unassigned_leads_are_kept_and_reported(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    with sqlite_store.session() as s:
        members.upsert_member(s, now=NOW, email="erin@x.com", name="Erin", role="admin")
        outcomes, effects = store_leads(
            s,
            [LeadIn(external_id="U1", name="Nobody's", owner_email="ghost@x.com")],  # type: ignore[call-arg]
            now=NOW,
            admin_channel="slack:CADMIN",
            company=Company(),
        )
    assert lead(sqlite_store, outcomes[0].lead_id).state == "unassigned"
    kinds = sorted(type(e).__name__ for e in effects)
    assert kinds == ["Notify", "Post"]


def test_help_and_unknown_commands(sqlite_store: Store, people: dict[str, Member]) -> None:
    (help_reply,) = act(sqlite_store, people["bob"], Kind.command, "help")
    assert isinstance(help_reply, Reply)
    assert {"/help", "/leaddef", "/leads"} <= {f.label for f in help_reply.card.fields}
    (unknown,) = act(sqlite_store, people["bob"], Kind.command, "frobnicate")
    assert isinstance(unknown, Reply) and "frobnicate" in unknown.card.text
