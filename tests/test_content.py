"""Content: ranked full-text search behind the storage layer (SQLite FTS5 and PostgreSQL
tsvector alike), words that look like query syntax, and `/content add` for marketers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import build_router
from bot.core.effects import FormErrors, Reply, ShowForm
from bot.core.interaction import Kind
from bot.slack.blocks import card_blocks
from bot.teams.cards import card_content
from handlers.form_fields import web_link
from storage import content
from storage import members as stored_members
from storage.db import Store
from storage.models import ContentItem, Member
from tests.support import act

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ROUTER = build_router()


def add(store: Store, title: str, *, description: str = "", tags: str = "", stage: str = "") -> int:
    with store.session() as s:
        item = content.add(
            s,
            title=title,
            link=f"https://example.com/{len(title)}-{abs(hash(title))}",
            description=description,
            tags=[t.strip() for t in tags.split(",") if t.strip()],
            stage=stage,
            added_by=None,
            now=NOW,
        )
        return item.id or 0


def titles(store: Store, words: str, limit: int = 5) -> list[str]:
    with store.session() as s:
        return [item.title for item in content.search(s, words=words, limit=limit)]


@pytest.fixture
def library(any_store: Store) -> Store:
    add(any_store, "Onboarding guide", description="How the security review works in week one")
    add(any_store, "Security whitepaper", description="Encryption, SSO and audits")
    add(any_store, "Customer stories", tags="security, banking", stage="consideration")
    add(any_store, "Pricing sheet", description="List prices and discounts", stage="decision")
    add(any_store, "ROI calculator", tags="pricing, finance", stage="decision")
    add(any_store, "Product tour", stage="awareness")
    return any_store


def test_a_title_match_outranks_tags_and_tags_outrank_the_description(library: Store) -> None:
    assert titles(library, "security") == [
        "Security whitepaper",
        "Customer stories",
        "Onboarding guide",
    ]
    assert titles(library, "pricing") == ["Pricing sheet", "ROI calculator"]


def test_words_are_stemmed_and_any_word_matches(library: Store) -> None:
    assert titles(library, "prices")[0] == "Pricing sheet"  # price / pricing / prices
    found = titles(library, "the audits or a banking story")
    assert set(found) == {"Security whitepaper", "Customer stories"}
    assert titles(library, "awareness") == ["Product tour"]  # the funnel stage is searched


def test_only_stop_words_or_punctuation_find_nothing(library: Store) -> None:
    assert titles(library, "the and of") == []
    assert titles(library, "   ") == []
    assert titles(library, '"*:()-') == []


@pytest.mark.parametrize(
    "words",
    [
        '"security',
        'security"',
        "security*",
        "* security *",
        "security AND",
        "AND security",
        "OR security OR",
        "NOT security",
        "-security",
        "security -",
        "title:security",
        "title : security",
        "(security",
        "security)",
        "(security OR",
        "NEAR(security pricing)",
        "security^",
        "'security'",
        "security; DROP TABLE content; --",
        "100% security_",
        "{security}",
        "security & pricing | !roi <-> x",
        "🔒 security",
        "security\u0000",
        "example.com\u0000 security",
        "example.com/\u0000security",
        "sécurité security",
    ],
)
def test_query_syntax_in_words_never_breaks_the_search(library: Store, words: str) -> None:
    found = titles(library, words)
    assert "Security whitepaper" in found
    with library.session() as s:  # and the table is intact
        assert content.count(s) == 6


def test_the_index_follows_edits_and_deletes(any_store: Store) -> None:
    item_id = add(any_store, "Battlecard: Initech")
    with any_store.session() as s:
        item = s.get(ContentItem, item_id)
        assert item is not None
        item.title = "Battlecard: Globex"
        s.add(item)
    assert titles(any_store, "initech") == []
    assert titles(any_store, "globex") == ["Battlecard: Globex"]
    with any_store.session() as s:
        s.delete(s.get(ContentItem, item_id))
    assert titles(any_store, "globex") == []


def test_a_pasted_link_finds_its_item(library: Store) -> None:
    with library.session() as s:
        item = content.search(s, words="pricing", limit=1)[0]
        link = item.link
    assert titles(library, link) == ["Pricing sheet"]
    assert titles(library, link.removeprefix("https://"))[0] == "Pricing sheet"
    assert titles(library, "example.com/%_") == []  # LIKE wildcards are literal


def test_the_newest_come_first_and_the_limit_holds(any_store: Store) -> None:
    for n in range(8):
        with any_store.session() as s:
            content.add(
                s,
                title=f"Case study {n}",
                link=f"https://example.com/case-{n}",
                description="",
                tags=["case study"],
                stage="consideration",
                added_by=None,
                now=NOW + timedelta(minutes=n),
            )
    with any_store.session() as s:
        assert [i.title for i in content.newest(s, limit=3)] == [
            "Case study 7",
            "Case study 6",
            "Case study 5",
        ]
        assert len(content.search(s, words="case study", limit=5)) == 5


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("https://Example.COM/Pricing/", "https://example.com/Pricing"),
        ("HTTP://example.com", "http://example.com"),
        ("  https://example.com/a?b=1#top ", "https://example.com/a?b=1#top"),
        ("example.com/pricing", ""),
        ("ftp://example.com/file", ""),
        ("javascript:alert(1)", ""),
        ("https://", ""),
        ("https://exa mple.com", ""),
        ("https://user:secret@example.com/x", ""),
        ("https://example.com:99999/x", ""),
        ("https://example.com/" + "x" * 2000, ""),
    ],
)
def test_links_are_web_links_in_one_normal_form(raw: str, normal: str) -> None:
    assert web_link(raw) == normal


# ---------------------------------------------------------------- /content in chat


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        return {
            "alice": stored_members.upsert_member(s, now=NOW, email="alice@x.com", name="Alice"),
            "carol": stored_members.upsert_member(
                s, now=NOW, email="carol@x.com", name="Carol", role="marketer"
            ),
        }


def command(store: Store, who: Member, text: str) -> list[object]:
    from bot.core.interaction import Interaction, Where

    interaction = Interaction(Kind.command, "content", who, Where("test"), text=text)
    return list(ROUTER.dispatch(store, interaction, NOW))


def submit_add(store: Store, who: Member, **values: str) -> list[object]:
    answers = {
        "title": "Security whitepaper",
        "link": "https://example.com/security",
        "description": "Encryption, SSO and audits",
        "tags": "security, compliance",
        "stage": "consideration",
        **values,
    }
    return list(
        act(
            ROUTER,
            store,
            who,
            Kind.form,
            "content.add",
            NOW,
            {k: [v] for k, v in answers.items()},
            nonce=values.get("title", "n"),
        )
    )


def test_a_rep_may_search_but_not_add(sqlite_store: Store, people: dict[str, Member]) -> None:
    (refused,) = command(sqlite_store, people["alice"], "add")
    assert isinstance(refused, Reply)
    assert "Only marketer, admin members can register content; you are a rep" in refused.card.text
    (refused,) = submit_add(sqlite_store, people["alice"])
    assert isinstance(refused, Reply) and "Only marketer" in refused.card.text
    with sqlite_store.session() as s:
        assert content.count(s) == 0


def test_a_marketer_registers_content_and_reps_find_it(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (form,) = command(sqlite_store, people["carol"], "add Security whitepaper")
    assert isinstance(form, ShowForm)
    assert [i.name for i in form.form.inputs] == ["title", "link", "description", "tags", "stage"]
    assert form.form.inputs[0].initial == ("Security whitepaper",)
    assert [o.value for o in form.form.inputs[4].options] == list(content.STAGES)
    (added,) = submit_add(sqlite_store, people["carol"])
    assert isinstance(added, Reply) and "Registered: Security whitepaper" in added.card.title

    (found,) = command(sqlite_store, people["alice"], "SSO security")
    assert isinstance(found, Reply)
    (field,) = found.card.fields
    assert field.label == "Security whitepaper"
    assert field.link == "https://example.com/security"
    assert "Consideration" in field.value and "security, compliance" in field.value
    # The title links to the content on every platform.
    assert "*<https://example.com/security|Security whitepaper>*" in str(card_blocks(found.card))
    facts = card_content(found.card)["body"][1]["facts"]
    assert facts[0]["title"] == "[Security whitepaper](https://example.com/security)"

    (none,) = command(sqlite_store, people["alice"], "webinar recording")
    assert isinstance(none, Reply) and "Nothing registered matches" in none.card.title
    assert "content add" in none.card.context

    (usage,) = command(sqlite_store, people["alice"], "")
    assert isinstance(usage, Reply) and "content pricing objection" in usage.card.text
    assert [f.label for f in usage.card.fields] == ["Security whitepaper"]


@pytest.mark.parametrize(
    "values,field,why",
    [
        ({"title": ""}, "title", "Give the content a title"),
        ({"title": "x" * 151}, "title", "under 150 characters"),
        ({"link": ""}, "link", "Give the link"),
        ({"link": "www.example.com/security"}, "link", "must start with http:// or https://"),
        ({"link": "ftp://example.com/file"}, "link", "not a web link"),
        ({"description": "d" * 1001}, "description", "under 1000 characters"),
        ({"tags": ",".join(f"t{n}" for n in range(11))}, "tags", "Up to 10 tags"),
        ({"tags": "a" * 41}, "tags", "under 40 characters"),
        ({"stage": "purchase"}, "stage", "Pick a funnel stage"),
        ({"stage": ""}, "stage", "Pick a funnel stage"),
    ],
)
def test_bad_content_is_refused_with_the_reason(
    sqlite_store: Store,
    people: dict[str, Member],
    values: dict[str, str],
    field: str,
    why: str,
) -> None:
    (refused,) = submit_add(sqlite_store, people["carol"], **values)
    assert isinstance(refused, FormErrors)
    assert why in refused.errors[field]
    with sqlite_store.session() as s:
        assert content.count(s) == 0


def test_the_same_link_twice_names_the_existing_item(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    submit_add(sqlite_store, people["carol"])
    (refused,) = submit_add(
        sqlite_store, people["carol"], title="Another", link="https://EXAMPLE.com/security/"
    )
    assert isinstance(refused, FormErrors)
    assert "already registered as “Security whitepaper” (content #1)" in refused.errors["link"]
    with sqlite_store.session() as s:
        assert content.count(s) == 1


def test_ten_tags_are_fine_and_duplicates_collapse(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    tags = ", ".join(f"t{n}" for n in range(10)) + ", T1, t2"
    (added,) = submit_add(sqlite_store, people["carol"], tags=tags)
    assert isinstance(added, Reply)
    with sqlite_store.session() as s:
        (item,) = content.newest(s)
        assert item.tags == ", ".join(f"t{n}" for n in range(10))


def test_linked_labels_render_safely_on_every_platform() -> None:
    import io

    from rich.console import Console

    from bot.console.chat import ConsoleScreen
    from bot.core.messages import Card, Fact

    card = Card(
        fields=(
            Fact("Guide <!channel> *bold*", "v", link="https://e.com/a|b>c(d)"),
            Fact("Not a link", "v", link="javascript:alert(1)"),
        )
    )
    slack = str(card_blocks(card))
    assert "*<https://e.com/a%7Cb&gt;c(d)|Guide &lt;!channel&gt; *bold*>*" in slack
    assert "javascript" not in slack and "*Not a link*: v" in slack
    facts = card_content(card)["body"][0]["facts"]
    assert facts[0]["title"] == r"[Guide ＜\!channel＞ \*bold\*](https://e.com/a|b%3Ec%28d%29)"
    assert facts[1]["title"] == "Not a link"
    buffer = io.StringIO()
    ConsoleScreen(Console(file=buffer, width=200, color_system=None)).show(card, heading="")
    assert "Guide <!channel> *bold* <https://e.com/a|b>c(d)>: v" in buffer.getvalue()
