"""The insights loop in the console, typed like a person: a typed campaign that does not
exist is refused and asked again, the marketer answers with new content, the rep hears back
and finds the content."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from storage import campaigns, content
from storage.db import Store
from storage.demo.company import create_demo
from storage.models import ContentItem, Insight
from tests.test_console import make_chat, number_of


async def test_insight_to_content_in_the_console(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        create_demo(s, leads=6, seed=3, now=datetime.now(UTC))
    chat, screen, typist = make_chat(sqlite_store)
    chat.switch("alice")
    with sqlite_store.session() as s:
        names = [c.name for c in campaigns.all_campaigns(s)]
    webinar = str(names.index("Webinar: Pipeline Hygiene") + 1)
    typist.lines.extend(
        [
            "The buyer asked whether we support SSO",
            "2",  # objection
            "Springfest",  # typed, and no such campaign
            "",
            # asked again
            "The buyer asked whether we support SSO",
            "",  # Enter keeps the kind marked (question)
            webinar,  # Webinar: Pipeline Hygiene, by its number in the list
            "sso, security",
        ]
    )
    await chat.line("/insight")
    text = screen.getvalue()
    assert "There is no campaign called “Springfest”" in text
    assert "Carol Chen, the Webinar: Pipeline Hygiene campaign's marketer" in text
    assert "→ to Carol Chen" in text
    with sqlite_store.session() as s:
        (insight,) = s.exec(
            select(Insight).where(Insight.text == "The buyer asked whether we support SSO")
        ).all()
        assert (insight.kind, insight.tags) == ("question", ["sso", "security"])

    chat.switch("carol")
    with sqlite_store.session() as s:
        # The demo's own content may match the insight's words: then a pick is offered first.
        offered = content.search(s, words=f"{insight.text} sso security", limit=5)
    skip_pick = [""] if offered else []
    typist.lines.extend(
        ["Yes: SAML 2.0 and OIDC.", *skip_pick, "SSO setup guide", "https://example.com/sso"]
    )
    await chat.press(number_of(chat, "Answer", f"insight_id={insight.id}"))
    text = screen.getvalue()
    assert "Carol Chen answered your buyer question" in text
    assert "SSO setup guide <https://example.com/sso>" in text
    with sqlite_store.session() as s:
        (item,) = s.exec(select(ContentItem).where(ContentItem.title == "SSO setup guide")).all()
        assert item.tags == "sso, security"

    chat.switch("alice")
    await chat.line("/content sso")
    assert "Content for “sso”" in screen.getvalue()
    assert "SSO setup guide" in screen.getvalue().split("Content for “sso”")[-1]
    await chat.line("/content add")
    assert "Only marketer, admin members can register content" in screen.getvalue()
