"""Insights → content, handler by handler: routing to marketing, claim, answer with linked
content, the rep hearing back, lists, insights duty and the digest's numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import Effect, FormErrors, Notify, Reply, ShowForm
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import card_from_dict
from handlers.ingest import LeadIn, store_leads
from storage import campaigns, channels, content, insights
from storage import members as stored_members
from storage.db import Store
from storage.models import Insight, InsightStatus, Member, OutboxMessage
from tests.support import act, owed

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ROUTER = build_router()


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        found = {
            "alice": stored_members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice"),
            "bob": stored_members.upsert_member(s, now=NOW, email="bob@x.com", name="Bob"),
            "carol": stored_members.upsert_member(
                s, now=NOW, email="carol@x.com", name="Carol", role="marketer"
            ),
            "dave": stored_members.upsert_member(
                s, now=NOW, email="dave@x.com", name="Dave", role="marketer"
            ),
            "erin": stored_members.upsert_member(
                s, now=NOW, email="erin@x.com", name="Erin", role="admin"
            ),
        }
        webinar = campaigns.ensure_campaign(s, name="Webinar")
        webinar.marketer_id = found["carol"].id
        s.add(webinar)
        campaigns.ensure_campaign(s, name="Trade show")
        return found


def run(
    store: Store, who: Member, kind: Kind, name: str, text: str = "", **args: str
) -> list[Effect]:
    interaction = Interaction(kind, name, who, Where("test"), args=args, text=text)
    return list(ROUTER.dispatch(store, interaction, NOW))


def raise_insight(store: Store, who: Member, **values: str) -> list[Effect]:
    answers = {"text": "Does it integrate with SAP?", "kind": "question", "tags": "", **values}
    state = {k: answers.pop(k) for k in ("lead_id",) if k in answers}
    return act(
        ROUTER,
        store,
        who,
        Kind.form,
        "insight.new",
        NOW,
        {k: [v] for k, v in answers.items()},
        nonce="n",
        **state,
    )


def answer(store: Store, who: Member, insight_id: int, **values: str) -> list[Effect]:
    answers = {"answer": "Yes: the SAP connector ships in the box.", **values}
    return act(
        ROUTER,
        store,
        who,
        Kind.form,
        "insight.answer",
        NOW,
        {k: [v] for k, v in answers.items()},
        insight_id=str(insight_id),
        nonce="a",
    )


def newest_insight(store: Store) -> Insight:
    with store.session() as s:
        row = s.exec(select(Insight).order_by(col(Insight.id).desc())).first()
        assert row is not None
        return row


def only_insight(store: Store) -> Insight:
    with store.session() as s:
        (row,) = s.exec(select(Insight)).all()
        return row


def notified(store: Store, insight_id: int | None = None) -> dict[int, Notify]:
    """The DMs owed (through the outbox) about one insight (default: the only one), by
    recipient, as the Notify effects they came from."""
    insight_id = insight_id or newest_insight(store).id
    return {
        row.member_id: Notify(row.member_id, card_from_dict(row.card), key=row.key)
        for row in owed(store)
        if row.member_id is not None and row.key.startswith(f"insight:{insight_id}:")
    }


def posted(store: Store) -> list[OutboxMessage]:
    return [row for row in owed(store) if row.target]


def replies(effects: list[Effect]) -> str:
    return " ".join(e.card.title + " " + e.card.text for e in effects if isinstance(e, Reply))


# ---------------------------------------------------------------- raising


def test_an_insight_goes_to_the_campaigns_marketer(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    effects = raise_insight(sqlite_store, people["alice"], campaign="webinar", tags="sap, erp")
    insight = only_insight(sqlite_store)
    assert (insight.status, insight.marketer_id) == ("open", people["carol"].id)
    assert insight.tags == ["sap", "erp"] and insight.campaign_id is not None
    (to_carol,) = notified(sqlite_store).values()
    assert to_carol.member_id == people["carol"].id
    assert to_carol.key == f"insight:{insight.id}:to:{people['carol'].id}"
    assert [b.label for b in to_carol.card.buttons] == ["Claim", "Answer"]
    assert to_carol.card.text == "Does it integrate with SAP?"
    assert "Webinar campaign's marketer" in replies(effects)
    assert not posted(sqlite_store)  # no insights channel set


def test_without_a_campaign_the_marketer_on_duty_hears_else_every_marketer(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    effects = raise_insight(sqlite_store, people["alice"], campaign="Trade show")
    assert set(notified(sqlite_store)) == {people["carol"].id, people["dave"].id}
    assert "marketing (Carol, Dave)" in replies(effects)

    (set_duty,) = run(sqlite_store, people["dave"], Kind.command, "insight", "duty")
    assert isinstance(set_duty, Reply) and "You are on insights duty" in set_duty.card.text
    effects = raise_insight(sqlite_store, people["bob"], text="Is there an EU data centre?")
    assert set(notified(sqlite_store)) == {people["dave"].id}
    assert "Dave, the marketer on insights duty" in replies(effects)


def test_the_insights_channel_gets_the_card_too(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    with sqlite_store.session() as s:
        channels.set_channel(s, kind="insights", target="slack:C0INSIGHT")
    effects = raise_insight(sqlite_store, people["alice"])
    (post,) = posted(sqlite_store)
    assert post.target == "slack:C0INSIGHT" and post.key.endswith(":posted")
    assert [b.label for b in card_from_dict(post.card).buttons] == ["Claim", "Answer"]
    insight_id = only_insight(sqlite_store).id or 0
    answer(sqlite_store, people["carol"], insight_id)
    posted_ids = [row.key for row in posted(sqlite_store)]
    assert posted_ids == [f"insight:{insight_id}:posted", f"insight:{insight_id}:answer-posted"]
    done = card_from_dict(posted(sqlite_store)[1].card)
    assert done.buttons == () and "Answered by Carol" in str(done.fields)
    assert people["alice"].id in notified(sqlite_store)  # and the rep hears too
    assert "insights channel" in replies(effects)


def test_share_insight_on_a_lead_pre_fills_the_lead_and_its_campaign(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    with sqlite_store.session() as s:
        (outcome,), _ = store_leads(
            s,
            [
                LeadIn(  # type: ignore[call-arg]
                    external_id="L1",
                    name="Jordan",
                    company="Globex",
                    owner_email="alice@x.com",
                    campaign="Webinar",
                )
            ],
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
        webinar = campaigns.ensure_campaign(s, name="Webinar")
    (form,) = run(
        sqlite_store, people["alice"], Kind.action, "insight.share", lead_id=str(outcome.lead_id)
    )
    assert isinstance(form, ShowForm)
    assert form.form.state["lead_id"] == str(outcome.lead_id)
    assert "About Jordan (Globex)" in form.form.intro
    campaign = next(i for i in form.form.inputs if i.name == "campaign")
    assert campaign.initial == (str(webinar.id),)
    raise_insight(
        sqlite_store, people["alice"], lead_id=str(outcome.lead_id), campaign=str(webinar.id)
    )
    card = notified(sqlite_store)[people["carol"].id].card
    assert ("Lead", "Jordan · Globex") in [(f.label, f.value) for f in card.fields]
    (missing,) = run(sqlite_store, people["alice"], Kind.action, "insight.share", lead_id="999")
    assert isinstance(missing, Reply) and "can't find that lead" in missing.card.text


def test_insight_text_after_the_command_pre_fills_the_form(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (form,) = run(sqlite_store, people["alice"], Kind.command, "insight", "Buyer asks about SOC 2")
    assert isinstance(form, ShowForm)
    assert form.form.inputs[0].initial == ("Buyer asks about SOC 2",)
    assert [i.name for i in form.form.inputs] == ["text", "kind", "campaign", "tags"]


@pytest.mark.parametrize(
    "values,field,why",
    [
        ({"text": ""}, "text", "Write what the buyer asked"),
        ({"text": "   "}, "text", "Write what the buyer asked"),
        ({"text": "x" * 1001}, "text", "under 1000 characters"),
        ({"text": "Marketing never sends anyone with budget"}, "text", "reads as blame"),
        ({"kind": "complaint"}, "kind", "Pick the kind"),
        ({"campaign": "Spring launch"}, "campaign", "no campaign called “Spring launch”"),
        ({"campaign": "9999"}, "campaign", "Known: Trade show, Webinar"),
        ({"tags": ",".join("abcdefghijk")}, "tags", "Up to 10 tags"),
    ],
)
def test_bad_insights_are_refused_with_the_reason(
    sqlite_store: Store,
    people: dict[str, Member],
    values: dict[str, str],
    field: str,
    why: str,
) -> None:
    (refused,) = raise_insight(sqlite_store, people["alice"], **values)
    assert isinstance(refused, FormErrors)
    assert why in refused.errors[field]
    with sqlite_store.session() as s:
        assert s.exec(select(Insight)).all() == []


# ---------------------------------------------------------------- claim and answer


def test_claim_is_for_marketing_and_first_come(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    raise_insight(sqlite_store, people["alice"], campaign="Webinar")
    insight_id = str(only_insight(sqlite_store).id)

    (refused,) = run(
        sqlite_store, people["bob"], Kind.action, "insight.claim", insight_id=insight_id
    )
    assert isinstance(refused, Reply) and "Only marketer, admin members" in refused.card.text

    effects = run(sqlite_store, people["dave"], Kind.action, "insight.claim", insight_id=insight_id)
    assert "You claimed this insight" in replies(effects)
    told = notified(sqlite_store)[people["alice"].id]
    assert told.card.title == "Dave is working on your insight"
    insight = only_insight(sqlite_store)
    assert (insight.status, insight.marketer_id) == ("claimed", people["dave"].id)

    for who in ("carol", "erin"):  # nobody, not even an admin, takes it from Dave
        (taken,) = run(
            sqlite_store, people[who], Kind.action, "insight.claim", insight_id=insight_id
        )
        assert isinstance(taken, Reply) and "claimed by Dave" in taken.card.text
    (taken,) = run(
        sqlite_store, people["carol"], Kind.action, "insight.answer", insight_id=insight_id
    )
    assert isinstance(taken, Reply) and "claimed by Dave" in taken.card.text
    (taken,) = answer(sqlite_store, people["carol"], int(insight_id))
    assert isinstance(taken, Reply) and "claimed by Dave" in taken.card.text
    assert only_insight(sqlite_store).marketer_id == people["dave"].id

    (again,) = run(
        sqlite_store, people["dave"], Kind.action, "insight.claim", insight_id=insight_id
    )
    assert isinstance(again, Reply) and "already claimed" in again.card.text
    (unknown,) = run(sqlite_store, people["dave"], Kind.action, "insight.claim", insight_id="77")
    assert isinstance(unknown, Reply) and "can't find that insight" in unknown.card.text


def test_the_answer_links_new_content_and_the_rep_hears_back(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    raise_insight(sqlite_store, people["alice"], campaign="Webinar", tags="sap")
    insight_id = only_insight(sqlite_store).id or 0
    with sqlite_store.session() as s:
        content.add(
            s,
            title="SAP integration guide",
            link="https://example.com/sap",
            description="",
            tags=["sap"],
            stage="decision",
            added_by=None,
            now=NOW,
        )
        content.add(
            s,
            title="Pricing sheet",
            link="https://example.com/pricing",
            description="",
            tags=[],
            stage="decision",
            added_by=None,
            now=NOW,
        )
    (form,) = run(
        sqlite_store, people["carol"], Kind.action, "insight.answer", insight_id=str(insight_id)
    )
    assert isinstance(form, ShowForm)
    assert [i.name for i in form.form.inputs] == ["answer", "content", "new_title", "new_link"]
    picks = next(i for i in form.form.inputs if i.name == "content")
    assert [o.label for o in picks.options] == ["SAP integration guide"]  # matches its words

    effects = answer(
        sqlite_store,
        people["carol"],
        insight_id,
        new_title="SAP connector one-pager",
        new_link="https://example.com/sap-connector",
    )
    assert "went to Alice" in replies(effects)
    rep = notified(sqlite_store)[people["alice"].id]
    assert rep.key == f"insight:{insight_id}:closed"
    assert rep.card.title == "Carol answered your buyer question"
    fields = {f.label: f for f in rep.card.fields}
    assert fields["Answer"].value == "Yes: the SAP connector ships in the box."
    assert fields["SAP connector one-pager"].link == "https://example.com/sap-connector"
    assert "the loop is closed" in rep.card.context
    insight = only_insight(sqlite_store)
    assert insight.status == InsightStatus.closed and insight.content_id is not None

    # The new content carries the buyer's words, so reps find it.
    (reply,) = run(sqlite_store, people["bob"], Kind.command, "content", "integrate SAP")
    assert isinstance(reply, Reply)
    assert [f.label for f in reply.card.fields] == [
        "SAP integration guide",  # both words in its title
        "SAP connector one-pager",  # one in the title, the other in its description
    ]

    # A closed insight cannot be answered or claimed again.
    for name in ("insight.answer", "insight.claim"):
        (closed,) = run(
            sqlite_store, people["carol"], Kind.action, name, insight_id=str(insight_id)
        )
        assert isinstance(closed, Reply) and "already answered by Carol" in closed.card.text
    (closed,) = answer(sqlite_store, people["dave"], insight_id)
    assert isinstance(closed, Reply) and "already answered by Carol" in closed.card.text


def test_an_admin_may_answer_what_someone_else_claimed(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    raise_insight(sqlite_store, people["alice"], campaign="Webinar")
    insight_id = only_insight(sqlite_store).id or 0
    run(sqlite_store, people["carol"], Kind.action, "insight.claim", insight_id=str(insight_id))
    with sqlite_store.session() as s:
        content.add(
            s,
            title="Integrations list",
            link="https://example.com/integrations",
            description="",
            tags=[],
            stage="",
            added_by=None,
            now=NOW,
        )
    answer(sqlite_store, people["erin"], insight_id, content="1")
    rep = notified(sqlite_store)[people["alice"].id]
    assert "Integrations list" in [f.label for f in rep.card.fields]
    assert only_insight(sqlite_store).marketer_id == people["erin"].id


@pytest.mark.parametrize(
    "values,field,why",
    [
        ({"answer": ""}, "answer", "Write the answer"),
        ({"answer": "a" * 2001}, "answer", "under 2000 characters"),
        ({"answer": "Sales always asks this, check the wiki"}, "answer", "reads as blame"),
        ({"content": "1", "new_title": "X", "new_link": "https://e.com/x"}, "new_link", "not both"),
        ({"content": "42"}, "content", "Pick content from the list"),
        ({"new_title": "One-pager"}, "new_link", "Give the link"),
        ({"new_link": "https://example.com/new"}, "new_title", "Give the content a title"),
        ({"new_title": "One-pager", "new_link": "sap.com"}, "new_link", "not a web link"),
        ({"new_title": "Dup", "new_link": "https://example.com/SAP/"}, "new_link", "“SAP guide”"),
    ],
)
def test_bad_answers_are_refused_and_nothing_changes(
    sqlite_store: Store,
    people: dict[str, Member],
    values: dict[str, str],
    field: str,
    why: str,
) -> None:
    raise_insight(sqlite_store, people["alice"], campaign="Webinar")
    with sqlite_store.session() as s:
        content.add(
            s,
            title="SAP guide",
            link="https://example.com/SAP",
            description="",
            tags=[],
            stage="",
            added_by=None,
            now=NOW,
        )
    (refused,) = answer(sqlite_store, people["carol"], only_insight(sqlite_store).id or 0, **values)
    assert isinstance(refused, FormErrors), refused
    assert why in refused.errors[field]
    assert only_insight(sqlite_store).status == "open"
    with sqlite_store.session() as s:
        assert content.count(s) == 1


def test_answering_without_content_closes_the_loop_too(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    raise_insight(sqlite_store, people["alice"])
    insight_id = only_insight(sqlite_store).id or 0
    (form,) = run(
        sqlite_store, people["dave"], Kind.action, "insight.answer", insight_id=str(insight_id)
    )
    assert isinstance(form, ShowForm)
    assert "content" not in [i.name for i in form.form.inputs]  # nothing matches its words
    answer(sqlite_store, people["dave"], insight_id)
    rep = notified(sqlite_store)[people["alice"].id]
    assert "Dave answered" in rep.card.title
    assert only_insight(sqlite_store).content_id is None


# ---------------------------------------------------------------- lists and duty


def listed(store: Store, who: Member, name: str = "insights", text: str = "") -> list[Any]:
    return run(store, who, Kind.command, name, text)


def test_lists_show_what_is_open_for_each_side(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (none,) = listed(sqlite_store, people["alice"])
    assert isinstance(none, Reply) and "no open insights" in none.card.text
    raise_insight(sqlite_store, people["alice"], text="Do you support SAML?")
    raise_insight(sqlite_store, people["bob"], text="Is there a free tier?")

    head, mine = listed(sqlite_store, people["alice"], "insight", "list")
    assert "1 open insight you shared" in head.card.title
    assert mine.card.text == "Do you support SAML?" and mine.card.buttons == ()
    head, *cards = listed(sqlite_store, people["carol"])
    assert "2 open insights waiting for marketing" in head.card.title
    assert [c.card.buttons[0].label for c in cards] == ["Claim", "Claim"]

    first = cards[0].card.buttons[0].value.split("=")[1]
    run(sqlite_store, people["dave"], Kind.action, "insight.claim", insight_id=first)
    head, *cards = listed(sqlite_store, people["carol"])  # Dave's claim is his, not Carol's
    assert [c.card.text for c in cards] == ["Is there a free tier?"]
    head, *cards = listed(sqlite_store, people["dave"])
    assert len(cards) == 2
    (mine,) = listed(sqlite_store, people["alice"])[1:]
    assert "Claimed by Dave" in [f.value for f in mine.card.fields]


def test_insights_duty_is_for_marketing_and_handed_back_by_its_holder(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (refused,) = run(sqlite_store, people["alice"], Kind.command, "insight", "duty")
    assert isinstance(refused, Reply) and "Only marketer, admin members can take insights duty" in (
        refused.card.text
    )
    run(sqlite_store, people["carol"], Kind.command, "insight", "duty")
    (took,) = run(sqlite_store, people["dave"], Kind.command, "insight", "duty")
    assert isinstance(took, Reply) and "(Before, Carol was.)" in took.card.text
    (not_you,) = run(sqlite_store, people["carol"], Kind.command, "insight", "duty off")
    assert isinstance(not_you, Reply) and "Dave is on insights duty, not you" in not_you.card.text
    (off,) = run(sqlite_store, people["dave"], Kind.command, "insight", "duty off")
    assert isinstance(off, Reply) and "off insights duty" in off.card.text
    with sqlite_store.session() as s:
        assert insights.duty_member_id(s) is None
    (usage,) = run(sqlite_store, people["dave"], Kind.command, "insight", "duty maybe")
    assert isinstance(usage, Reply) and "insight duty off" in usage.card.text


def test_someone_on_duty_who_left_marketing_is_skipped(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    run(sqlite_store, people["dave"], Kind.command, "insight", "duty")
    with sqlite_store.session() as s:
        dave = s.get(Member, people["dave"].id)
        assert dave is not None
        dave.role = "rep"
        s.add(dave)
    raise_insight(sqlite_store, people["alice"])
    assert set(notified(sqlite_store)) == {people["carol"].id}


# ---------------------------------------------------------------- storage for home and digest


def test_open_of_and_the_weeks_numbers(any_store: Store) -> None:
    with any_store.session() as s:
        alice = stored_members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice")
        carol = stored_members.upsert_member(s, now=NOW, email="carol@x.com", name="Carol")
        ids = []
        for n, day in enumerate((0, 1, 2, 9)):
            insight = insights.add(
                s,
                author_id=alice.id or 0,
                kind="question",
                text=f"q{n}",
                lead_id=None,
                campaign_id=None,
                tags=[],
                marketer_id=carol.id if n == 0 else None,
                now=NOW + timedelta(days=day),
            )
            ids.append(insight)
        item = content.add(
            s,
            title="Guide",
            link="https://example.com/g",
            description="",
            tags=[],
            stage="",
            added_by=None,
            now=NOW,
        )
        insights.claim(s, insight=ids[1], marketer_id=carol.id or 0, now=NOW)
        insights.close(
            s,
            insight=ids[0],
            marketer_id=carol.id or 0,
            answer="a",
            content_id=item.id,
            now=NOW + timedelta(days=3),
        )
        insights.close(
            s,
            insight=ids[2],
            marketer_id=carol.id or 0,
            answer="a",
            content_id=None,
            now=NOW + timedelta(days=8),
        )
        assert [i.text for i in insights.open_of(s, member_id=alice.id or 0)] == ["q1", "q3"]
        assert [i.text for i in insights.open_of(s, member_id=carol.id or 0)] == ["q1"]
        week = insights.week_stats(s, start=NOW, end=NOW + timedelta(days=7))
        assert week == insights.InsightWeek(raised=3, closed=1, closed_with_content=1)
        later = insights.week_stats(s, start=NOW + timedelta(days=7), end=NOW + timedelta(days=14))
        assert later == insights.InsightWeek(raised=1, closed=1, closed_with_content=0)
        empty = insights.week_stats(s, start=NOW - timedelta(days=7), end=NOW)
        assert empty == insights.InsightWeek(0, 0, 0)


def test_the_loop_on_both_databases(any_store: Store) -> None:
    """Raise, claim, answer with new content, hear back, find it: SQLite and PostgreSQL."""
    with any_store.session() as s:
        alice = stored_members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice")
        carol = stored_members.upsert_member(
            s, now=NOW, email="carol@x.com", name="Carol", role="marketer"
        )
        content.add(
            s,
            title="Security overview",
            link="https://example.com/security",
            description="Covers SAML single sign-on among other things",
            tags=[],
            stage="awareness",
            added_by=None,
            now=NOW,
        )
    raise_insight(any_store, alice, text="Do you support SAML single sign-on?", tags="sso")
    insight_id = only_insight(any_store).id or 0
    run(any_store, carol, Kind.action, "insight.claim", insight_id=str(insight_id))
    (taken,) = run(any_store, carol, Kind.action, "insight.claim", insight_id=str(insight_id))
    assert isinstance(taken, Reply) and "already claimed" in taken.card.text
    answer(
        any_store,
        carol,
        insight_id,
        new_title="SAML setup guide",
        new_link="https://example.com/saml",
    )
    rep = notified(any_store)[alice.id or 0]
    assert "SAML setup guide" in [f.label for f in rep.card.fields]
    (found,) = run(any_store, alice, Kind.command, "content", "SAML")
    assert isinstance(found, Reply)
    # A title match outranks a description match.
    assert [f.label for f in found.card.fields] == ["SAML setup guide", "Security overview"]
    (closed,) = answer(any_store, carol, insight_id)
    assert isinstance(closed, Reply) and "already answered by Carol" in closed.card.text
    with any_store.session() as s:
        assert insights.open_of(s, member_id=alice.id or 0) == []
        week = insights.week_stats(s, start=NOW, end=NOW + timedelta(days=7))
        assert week == insights.InsightWeek(raised=1, closed=1, closed_with_content=1)
