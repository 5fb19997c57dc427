"""The console journey a new user takes after the quick start, driven like a person types."""

from __future__ import annotations

import io
from collections import deque
from datetime import time

from rich.console import Console
from sqlmodel import select

from app import build_router
from bot.console.chat import ConsoleChat, ConsoleMessenger, ConsoleScreen
from bot.core.business_time import Company
from bot.core.delivery import Bot, Deliverer
from digests.scheduler import Scheduler
from storage.db import Store
from storage.demo.company import create_demo
from storage.models import Campaign, EventKind, Lead, LeadEvent, Member

# A company that works round the clock: nothing waits for the morning, whenever this runs.
ROUND_THE_CLOCK = Company(start=time(0, 0), end=time.max, weekdays=frozenset(range(7)))


class Typist:
    """Answers the console's prompts from a queue, as a person would type them."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        return self.lines.popleft()


def make_chat(store: Store) -> tuple[ConsoleChat, io.StringIO, Typist]:
    buffer = io.StringIO()
    screen = ConsoleScreen(Console(file=buffer, width=120, color_system=None))
    typist = Typist()
    chat: ConsoleChat
    messenger = ConsoleMessenger(screen, lambda: chat.current())
    deliverer = Deliverer(store, [messenger])
    jobs = Scheduler(store, deliverer, ROUND_THE_CLOCK)
    bot = Bot(store, build_router(ROUND_THE_CLOCK), deliverer)
    chat = ConsoleChat(store, bot, screen, typist, jobs.run_once)
    return chat, buffer, typist


def number_of(chat: ConsoleChat, label: str, value: str) -> int:
    """The newest button with this label whose value mentions `value`."""
    found = [n for n, b in chat.screen.buttons.items() if b.label == label and value in b.value]
    assert found, f"no [{label}] button for {value}"
    return max(found)


def waiting_leads(store: Store, owner_handle: str) -> list[int]:
    with store.session() as s:
        from storage import members

        owner = members.member_by(s, handle=owner_handle)
        assert owner is not None
        leads = s.exec(
            select(Lead).where(Lead.owner_id == owner.id, Lead.state == "handed_off")
        ).all()
        return [lead.id for lead in leads if lead.id is not None]


def marketer_of(store: Store, lead_id: int) -> str:
    with store.session() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None and lead.campaign_id is not None
        campaign = s.get(Campaign, lead.campaign_id)
        assert campaign is not None and campaign.marketer_id is not None
        marketer = s.get(Member, campaign.marketer_id)
        assert marketer is not None
        return marketer.handle


def kinds(store: Store, lead_id: int) -> list[str]:
    with store.session() as s:
        return [
            e.kind
            for e in s.exec(
                select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(LeadEvent.id)
            ).all()
        ]


async def test_console_journey(sqlite_store: Store) -> None:
    from datetime import UTC, datetime

    with sqlite_store.session() as s:
        create_demo(s, leads=12, seed=7, now=datetime.now(UTC))
    chat, screen, typist = make_chat(sqlite_store)
    assert chat.switch("alice")
    await chat.line("/leads")
    first, second = waiting_leads(sqlite_store, "alice")[:2]
    # Accept one lead: its card is reprinted in place, accepted.
    before = len(screen.getvalue())
    await chat.press(number_of(chat, "Accept", f"lead_id={first}"))
    after = screen.getvalue()[before:]
    assert "updated in place" in after and "Accepted by Alice Adams" in after

    # Reject another with two criteria and a comment.
    typist.lines.extend(["1,4", "They have <no> budget this year"])
    await chat.press(number_of(chat, "Not a fit", f"lead_id={second}"))
    text = screen.getvalue()
    assert "Not a fit (lead definition v1): Budget confirmed or likely, Buying within" in text
    assert "They have <no> budget this year" in text

    # Ask for info; Carol (the campaign's marketer) answers; the answer comes back.
    typist.lines.append("Is this the EMEA or the US office?")
    await chat.press(number_of(chat, "Need info", f"lead_id={first}"))
    assert "needs info about" in screen.getvalue()
    chat.switch(marketer_of(sqlite_store, first))
    typist.lines.append("EMEA, the Berlin office")
    await chat.press(number_of(chat, "Answer", f"question={first}:"))
    assert "answered your question" in screen.getvalue()
    assert "EMEA, the Berlin office" in screen.getvalue()
    assert "in the thread of card" in screen.getvalue()

    # Log two attempts as Alice: the card counts them.
    chat.switch("alice")
    for channel in ("1", "2"):
        typist.lines.extend([channel, "1", ""])
        await chat.press(number_of(chat, "Log attempt", f"lead_id={first}"))
    assert "2 so far" in screen.getvalue()
    assert kinds(sqlite_store, first).count(EventKind.attempt_logged) == 2
    assert EventKind.info_answered in kinds(sqlite_store, first)
    assert EventKind.not_a_fit in kinds(sqlite_store, second)


async def test_console_forms_re_ask_after_a_mistake(sqlite_store: Store) -> None:
    from datetime import UTC, datetime

    with sqlite_store.session() as s:
        create_demo(s, leads=6, seed=1, now=datetime.now(UTC))
    chat, screen, typist = make_chat(sqlite_store)
    chat.switch("alice")
    await chat.line("/leads")
    lead_id = waiting_leads(sqlite_store, "alice")[0]
    typist.lines.extend(["", "", "3", ""])  # no criteria → error → asked again
    await chat.press(number_of(chat, "Not a fit", f"lead_id={lead_id}"))
    assert "Pick at least one criterion" in screen.getvalue()
    assert EventKind.not_a_fit in kinds(sqlite_store, lead_id)
    await chat.press(999)
    assert "There is no button [999]" in screen.getvalue()


async def test_cards_with_selects_and_user_text_render_safely() -> None:
    from bot.core.messages import Button, Card, Fact, Option, Select

    buffer = io.StringIO()
    screen = ConsoleScreen(Console(file=buffer, width=120, color_system=None))
    card = Card(
        title="[bold]Lead[/bold]",
        fields=(Fact("Name", "[red]x[/red] <!channel>"),),
        buttons=(Button("Accept", "lead.accept", "lead_id=1"),),
        selects=(Select("Snooze", "lead.snooze", (Option("1h", "1 hour"), Option("1d", "1 day"))),),
    )
    screen.show(card, heading="to you")
    text = buffer.getvalue()
    assert "[bold]Lead[/bold]" in text and "[red]x[/red] <!channel>" in text
    assert "[1] Accept" in text and "[2] Snooze: 1 hour" in text and "[3] Snooze: 1 day" in text
    assert screen.buttons[3].action == "lead.snooze" and screen.buttons[3].value == "1d"


async def test_the_scheduler_speaks_in_the_console(sqlite_store: Store) -> None:
    """A lead left alone: `/tick` shows the reminder, then the breach, privately."""
    from datetime import UTC, datetime, timedelta

    from handlers.ingest import LeadIn, store_leads
    from storage import members

    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with sqlite_store.session() as s:
        members.upsert_member(
            s, now=monday, email="alice@x.com", name="Alice", timezone="Europe/London"
        )
        store_leads(
            s,
            [LeadIn(external_id="Q1", name="Quinn Lee", owner_email="alice@x.com")],  # type: ignore[call-arg]
            now=monday,
            admin_channel=None,
            company=Company(),
        )
    buffer = io.StringIO()
    screen = ConsoleScreen(Console(file=buffer, width=120, color_system=None))
    messenger = ConsoleMessenger(screen, lambda: None)
    deliverer = Deliverer(sqlite_store, [messenger])
    jobs = Scheduler(sqlite_store, deliverer, Company("Europe/London"))
    chat = ConsoleChat(
        sqlite_store,
        Bot(sqlite_store, build_router(), deliverer),
        screen,
        Typist(),
        jobs.run_once,
    )
    chat.switch("alice")
    await chat.line(f"/tick {(monday + timedelta(hours=2)).isoformat()}")
    assert "Reminder" not in buffer.getvalue()
    await chat.line(f"/tick {(monday + timedelta(hours=3)).isoformat()}")
    assert "Reminder: first touch for Quinn Lee" in buffer.getvalue()
    await chat.line("/tick yesterday")
    assert "Use /tick 2026-11-24T12:00" in buffer.getvalue()
    await chat.line(f"/tick {(monday + timedelta(hours=4)).isoformat()}")
    assert "SLA window passed: first touch for Quinn Lee" in buffer.getvalue()
    assert buffer.getvalue().count("Reminder: first touch") == 1
