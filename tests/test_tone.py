"""The tone check: blaming, contemptuous and shouting text is held back with an explanation;
ordinary sales talk passes. Its word list is data that admins edit in chat."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import FormErrors, Reply
from bot.core.interaction import Interaction, Kind, Where
from handlers import tone
from handlers.ingest import LeadIn, store_leads
from storage import leads as stored_leads
from storage import members as stored_members
from storage.db import Store
from storage.models import EventKind, Member
from tests.support import act

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ROUTER = build_router()


@pytest.mark.parametrize(
    "text,phrase,kind",
    [
        ("Honestly these are garbage leads again", "garbage leads", "contempt"),
        ("GARBAGE   LEADS.", "GARBAGE   LEADS", "contempt"),
        ("Typical: lazy reps never call back", "lazy reps", "blame"),
        ("Marketing never sends anyone with budget", "Marketing never", "blame"),
        ("Whoever qualified this is an idiot", "idiot", "insult"),
        ("As usual, no phone number", "As usual", "blame"),
        ("THIS IS COMPLETELY UNACCEPTABLE", "THIS IS COMPLETELY UNACCEPTABLE", "shouting"),
    ],
)
def test_blaming_text_is_named(sqlite_store: Store, text: str, phrase: str, kind: str) -> None:
    with sqlite_store.session() as s:
        flag = tone.check(s, text)
    assert flag is not None
    assert (flag.phrase, flag.kind) == (phrase, kind)
    note = tone.held_back(flag)
    assert f"“{phrase}”" in note and "was not sent" in note


@pytest.mark.parametrize(
    "text",
    [
        "They want to kill the deal if pricing goes up",
        "Budget owner is the CFO, the VP of EMEA signs",
        "Call on Monday; EMEA CFO OK with it",
        "Not in territory: the buyer sits in APAC",
        "They said the webinar was a great use of time",
        "Idiomatic question: does the ROI model cover usage?",
        "A lazy Sunday is the only time they answer",
        "Sales-ready? Not yet, timing is Q3",
    ],
)
def test_ordinary_sales_talk_passes(sqlite_store: Store, text: str) -> None:
    with sqlite_store.session() as s:
        assert tone.check(s, text) is None


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        return {
            "erin": stored_members.upsert_member(
                s, now=NOW, email="erin@x.com", name="Erin", role="admin"
            ),
            "alice": stored_members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice"),
        }


def say_tone(store: Store, who: Member, text: str) -> str:
    interaction = Interaction(Kind.command, "tone", who, Where("test"), text=text)
    (reply,) = ROUTER.dispatch(store, interaction, NOW)
    assert isinstance(reply, Reply)
    return reply.card.text + " ".join(f"{f.label}={f.value}" for f in reply.card.fields)


def test_admins_edit_the_list_and_others_may_only_look(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    erin, alice = people["erin"], people["alice"]
    assert "garbage leads=contempt" in say_tone(sqlite_store, alice, "")
    assert "Only admin members can change the tone check" in say_tone(
        sqlite_store, alice, "add rubbish | Say what was missing"
    )
    assert "“rubbish” (blame) is now held back" in say_tone(
        sqlite_store, erin, "add rubbish | Say what was missing"
    )
    assert "“rubbish” reads as blame" in say_tone(sqlite_store, alice, "check Total rubbish, this")
    assert "“cowboys” (insult)" in say_tone(sqlite_store, erin, "add cowboys as insult")
    assert "is no longer held back" in say_tone(sqlite_store, erin, "remove Rubbish")
    assert "Nothing to hold back" in say_tone(sqlite_store, alice, "check Total rubbish, this")
    assert "is not on the list" in say_tone(sqlite_store, erin, "remove rubbish")


def test_a_blaming_not_a_fit_comment_is_sent_back_and_nothing_recorded(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    with sqlite_store.session() as s:
        (outcome,), _ = store_leads(
            s,
            [LeadIn(external_id="L1", name="Jordan", owner_email="alice@x.com")],  # type: ignore[call-arg]
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
    state = {"lead_id": str(outcome.lead_id), "nonce": "n1"}
    values = {"criteria": ["budget"], "comment": ["Garbage leads from this webinar"]}
    (refused,) = act(
        ROUTER,
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.not_a_fit",
        NOW,
        values,
        "form:n1",
        **state,
    )
    assert isinstance(refused, FormErrors)
    assert "“Garbage leads” reads as contempt" in refused.errors["comment"]
    assert "Pick the criteria the lead failed instead" in refused.errors["comment"]
    with sqlite_store.session() as s:
        assert stored_leads.events_of(s, lead_id=outcome.lead_id, kind=EventKind.not_a_fit) == []
    values["comment"] = ["No budget until Q3"]
    effects = act(
        ROUTER,
        sqlite_store,
        people["alice"],
        Kind.form,
        "lead.not_a_fit",
        NOW,
        values,
        "form:n1",
        **state,
    )
    assert not any(isinstance(e, FormErrors) for e in effects)
    with sqlite_store.session() as s:
        (verdict,) = stored_leads.events_of(s, lead_id=outcome.lead_id, kind=EventKind.not_a_fit)
        assert verdict.data["comment"] == "No budget until Q3"
