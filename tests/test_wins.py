"""Wins: stored, posted in the wins channel crediting the rep and the campaign's marketer,
the marketer thanked in a DM; without a channel the author learns how to get one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import Effect, FormErrors, Reply, ShowForm
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import card_from_dict
from handlers.ingest import LeadIn, store_leads
from storage import campaigns, members, wins
from storage import channels as stored_channels
from storage.db import Store
from storage.models import Lead, LeadState, Member, Win
from tests.support import act, owed

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ROUTER = build_router()


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        found = {
            "alice": members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice"),
            "bob": members.upsert_member(s, now=NOW, email="bob@x.com", name="Bob"),
            "carol": members.upsert_member(
                s, now=NOW, email="carol@x.com", name="Carol", role="marketer"
            ),
        }
        webinar = campaigns.ensure_campaign(s, name="Webinar")
        webinar.marketer_id = found["carol"].id
        s.add(webinar)
        campaigns.ensure_campaign(s, name="Trade show")
        return found


def new_lead(store: Store, name: str, company: str, state: LeadState) -> int:
    with store.session() as s:
        (outcome,), _ = store_leads(
            s,
            [
                LeadIn(  # type: ignore[call-arg]
                    external_id=name,
                    name=name,
                    company=company,
                    owner_email="alice@x.com",
                    campaign="Webinar",
                )
            ],
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
        lead = s.get(Lead, outcome.lead_id)
        assert lead is not None
        lead.state = state.value
        s.add(lead)
        return outcome.lead_id


def share(store: Store, who: Member, **values: str) -> list[Effect]:
    answers = {"story": "Signed a three-year deal after the webinar demo.", **values}
    return act(
        ROUTER,
        store,
        who,
        Kind.form,
        "win.new",
        NOW,
        {k: [v] for k, v in answers.items()},
        nonce="w",
    )


def the_win(store: Store) -> Win:
    with store.session() as s:
        (win,) = s.exec(select(Win)).all()
        return win


def test_the_form_offers_my_accepted_leads_and_the_campaigns(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    new_lead(sqlite_store, "Jordan", "Globex", LeadState.accepted)
    new_lead(sqlite_store, "Priya", "Initech", LeadState.handed_off)
    interaction = Interaction(Kind.command, "win", people["alice"], Where("test"), text="Globex!")
    (form,) = ROUTER.dispatch(sqlite_store, interaction, NOW)
    assert isinstance(form, ShowForm)
    inputs = {i.name: i for i in form.form.inputs}
    assert inputs["story"].initial == ("Globex!",)
    assert [o.label for o in inputs["lead"].options] == ["Jordan · Globex"]
    assert [o.label for o in inputs["campaign"].options] == ["Trade show", "Webinar"]
    bob = Interaction(Kind.command, "win", people["bob"], Where("test"))
    (form,) = ROUTER.dispatch(sqlite_store, bob, NOW)
    assert isinstance(form, ShowForm)
    assert "lead" not in [i.name for i in form.form.inputs]  # Bob has no accepted lead


def test_a_win_is_posted_crediting_both_sides(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    with sqlite_store.session() as s:
        stored_channels.set_channel(s, kind="wins", target="slack:C0WINS")
    lead_id = new_lead(sqlite_store, "Jordan", "Globex", LeadState.accepted)
    effects = share(sqlite_store, people["alice"], lead=str(lead_id))
    win = the_win(sqlite_store)
    assert (win.lead_id, win.marketer_id) == (lead_id, people["carol"].id)
    assert win.campaign_id is not None  # the lead's campaign
    (post,) = [row for row in owed(sqlite_store) if row.target]
    assert (post.target, post.key) == ("slack:C0WINS", f"win:{win.id}")
    card = card_from_dict(post.card)
    assert card.title == "Alice closed Globex — from Carol's Webinar campaign"
    assert card.text == "Signed a three-year deal after the webinar demo."
    (thanks,) = owed(sqlite_store, people["carol"].id)
    assert thanks.key == f"win:{win.id}:marketer"
    assert card_from_dict(thanks.card).title == "Alice credited your Webinar campaign in a win"
    (reply,) = [e for e in effects if isinstance(e, Reply)]
    assert "posted in the wins channel, crediting Carol too" in reply.card.text


def test_without_a_wins_channel_the_author_learns_how_and_the_marketer_still_hears(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    effects = share(sqlite_store, people["bob"], campaign="webinar", story="WE WON IT TODAY")
    (reply,) = [e for e in effects if isinstance(e, Reply)]
    assert "no wins channel is set up" in reply.card.text
    assert "liaison channels set wins slack:C…" in reply.card.text
    assert not [row for row in owed(sqlite_store) if row.target]
    (thanks,) = owed(sqlite_store, people["carol"].id)
    assert "A win for Bob — from Carol's Webinar campaign" in card_from_dict(thanks.card).context
    assert the_win(sqlite_store).story == "WE WON IT TODAY"  # capitals are fine in a win


def test_a_campaign_without_a_marketer_or_no_campaign_at_all(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    share(sqlite_store, people["bob"], campaign="Trade show")
    share(sqlite_store, people["bob"], story="Second one")
    with sqlite_store.session() as s:
        rows = wins.wins_between(s, start=NOW, end=NOW + timedelta(days=1))
    assert [(r.author, r.campaign, r.marketer) for r in rows] == [
        ("Bob", "Trade show", None),
        ("Bob", None, None),
    ]
    assert owed(sqlite_store) == []  # nobody to credit, no channel


@pytest.mark.parametrize(
    "values,field,why",
    [
        ({"story": ""}, "story", "Tell the story"),
        ({"story": "s" * 1501}, "story", "under 1500 characters"),
        ({"story": "Finally, despite the garbage leads"}, "story", "reads as contempt"),
        ({"campaign": "Spring launch"}, "campaign", "no campaign called “Spring launch”"),
        ({"lead": "999"}, "lead", "one of your own accepted leads"),
        ({"lead": "priya"}, "lead", "not accepted"),
        ({"lead": "bobs"}, "lead", "one of your own accepted leads"),
    ],
)
def test_bad_wins_are_refused_with_the_reason(
    sqlite_store: Store,
    people: dict[str, Member],
    values: dict[str, str],
    field: str,
    why: str,
) -> None:
    leads = {
        "priya": new_lead(sqlite_store, "Priya", "Initech", LeadState.handed_off),
        "bobs": new_lead(sqlite_store, "Bo", "Hooli", LeadState.accepted),
    }
    with sqlite_store.session() as s:
        bobs = s.get(Lead, leads["bobs"])
        assert bobs is not None
        bobs.owner_id = people["bob"].id
        s.add(bobs)
    values = {k: str(leads.get(v, v)) if k == "lead" else v for k, v in values.items()}
    (refused,) = share(sqlite_store, people["alice"], **values)
    assert isinstance(refused, FormErrors)
    assert why in refused.errors[field]
    with sqlite_store.session() as s:
        assert s.exec(select(Win)).all() == []


def test_wins_between_is_the_period_oldest_first(any_store: Store) -> None:
    with any_store.session() as s:
        alice = members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice")
        carol = members.upsert_member(s, now=NOW, email="carol@x.com", name="Carol")
        campaign = campaigns.ensure_campaign(s, name="Webinar")
        for day in (3, 0, 8, -1):
            wins.add(
                s,
                author_id=alice.id or 0,
                story=f"day {day}",
                lead_id=None,
                campaign_id=campaign.id,
                marketer_id=carol.id,
                now=NOW + timedelta(days=day),
            )
        rows = wins.wins_between(s, start=NOW, end=NOW + timedelta(days=7))
        assert [r.story for r in rows] == ["day 0", "day 3"]
        assert {(r.author, r.marketer, r.campaign) for r in rows} == {("Alice", "Carol", "Webinar")}
        ids = s.exec(select(Win.id).order_by(col(Win.created_at))).all()
        assert len(ids) == 4
