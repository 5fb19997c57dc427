"""The console adapter: a local chat in the terminal where you act as any member.

`/as NAME` switches member, cards show numbered buttons (type the number to press),
forms ask field by field. Messages the bot sends to other members are shown too,
addressed to them, so one person can play the whole journey.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from bot.core.buttons import decode
from bot.core.delivery import Bot, Posted
from bot.core.effects import Effect, FormErrors
from bot.core.interaction import Interaction, Kind, Person, Where
from bot.core.messages import (
    Button,
    Card,
    CardPlace,
    Form,
    Input,
    InputKind,
    Report,
    card_from_dict,
)
from bot.core.text import text_for, when
from storage import leads
from storage import members as stored_members
from storage.db import Store
from storage.outbox import held_since

PLATFORM = "console"
Tick = Callable[[datetime], Awaitable[object]]


@dataclass
class ConsoleScreen:
    """What the terminal shows: cards with numbered buttons, remembered by number."""

    out: Console
    buttons: dict[int, Button] = field(default_factory=dict)
    cards: dict[str, int] = field(default_factory=dict)
    next_button: int = 1
    next_card: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)

    def show(self, card: Card, *, heading: str, card_key: str | None = None) -> str:
        """Print a card; returns its message id (`c<N>`). Safe from the scheduler's thread."""
        with self.lock:
            return self._show(card, heading=heading, card_key=card_key)

    def _show(self, card: Card, *, heading: str, card_key: str | None) -> str:
        if card_key is not None and card_key in self.cards:
            number = self.cards[card_key]
        else:
            number = self.next_card
            self.next_card += 1
            if card_key is not None:
                self.cards[card_key] = number
        lines = []
        if card.text:
            lines.append(escape(card.text))
        for f in card.fields:
            link = f" <{escape(f.link)}>" if f.link else ""
            lines.append(f"[bold]{escape(f.label)}[/bold]{link}: {escape(f.value)}")
        if card.context:
            lines.append(f"[dim]{escape(card.context)}[/dim]")
        labels = []
        for button in card.buttons:
            self.buttons[self.next_button] = button
            labels.append(f"[cyan][{self.next_button}][/cyan] {escape(button.label)}")
            self.next_button += 1
        for select in card.selects:
            # A drop-down becomes one numbered button per choice.
            for option in select.options:
                self.buttons[self.next_button] = Button(option.label, select.action, option.value)
                labels.append(
                    f"[cyan][{self.next_button}][/cyan] {escape(select.label)}: "
                    f"{escape(option.label)}"
                )
                self.next_button += 1
        if labels:
            lines.append("   ".join(labels))
        title = f"#{number} {escape(card.title)}" if card.title else f"#{number}"
        self.out.print(f"[magenta]{escape(heading)}[/magenta]")
        self.out.print(Panel("\n".join(lines) or " ", title=title, title_align="left"))
        return f"c{number}"


class ConsoleMessenger:
    """Delivers everything to the terminal; every member is reachable here."""

    platform = PLATFORM

    def __init__(
        self,
        screen: ConsoleScreen,
        current: Callable[[], Person | None],
        chart_dir: Path = Path("."),
    ) -> None:
        self.screen = screen
        self.current = current
        self.chart_dir = chart_dir

    def _to(self, member: Person) -> str:
        me = self.current()
        if me is not None and me.id == member.id:
            return text_for("console_to_you")
        return text_for(
            "console_to_member", name=member.name, handle=member.handle, role=member.role
        )

    def reaches(self, member: Person) -> bool:
        return True

    async def send(self, member: Person, card: Card) -> Posted:
        key = f"{member.id}:{card.title}:{self.screen.next_card}"
        message_id = self.screen.show(card, heading=self._to(member), card_key=key)
        return Posted(channel=member.handle, message_id=message_id)

    async def post(self, channel: str, card: Card) -> Posted:
        message_id = self.screen.show(card, heading=text_for("console_posted", channel=channel))
        return Posted(channel=channel, message_id=message_id)

    async def post_report(self, channel: str, report: Report) -> Posted:
        """The digest as text in the terminal; its chart saved next to the database."""
        from digests.report import document

        heading = escape(text_for("console_posted", channel=channel))
        with self.screen.lock:
            self.screen.out.print(f"[magenta]{heading}[/magenta]")
            self.screen.out.print(escape(document(report, "text")))
            if report.chart:
                path = self.chart_dir / "liaison-digest.png"
                path.write_bytes(report.chart)
                self.screen.out.print(escape(text_for("console_chart_saved", path=str(path))))
        message_id = f"c{self.screen.next_card}"
        self.screen.next_card += 1
        return Posted(channel=channel, message_id=message_id)

    async def update(self, location: CardPlace, card: Card) -> None:
        key = f"location:{location.message_id}"
        self.screen.cards.setdefault(key, int(location.message_id.lstrip("c")))
        self.screen.show(
            card, heading=text_for("console_updated", number=location.message_id[1:]), card_key=key
        )

    async def reply_in_thread(self, location: CardPlace, card: Card) -> Posted:
        heading = text_for(
            "console_in_thread", number=location.message_id[1:], channel=location.channel
        )
        message_id = self.screen.show(card, heading=heading)
        return Posted(channel=location.channel, message_id=message_id)


class ConsoleResponder:
    """Private answers and forms for the member at the keyboard."""

    def __init__(self, screen: ConsoleScreen) -> None:
        self.screen = screen
        self.pending_form: Form | None = None

    async def reply(self, card: Card) -> None:
        self.screen.show(card, heading=text_for("console_private"))

    async def show_form(self, form: Form) -> None:
        self.pending_form = form

    async def report(self, report: Report) -> None:
        from digests.report import document

        card = Card(title=report.title, text=document(report, "text"))
        self.screen.show(card, heading=text_for("console_private"))

    async def form_errors(self, errors: dict[str, str]) -> None:
        for name, error in errors.items():
            self.screen.out.print(f"[red]{escape(name)}: {escape(error)}[/red]")


class ConsoleChat:
    """The read-eval loop: commands, button numbers and forms."""

    def __init__(
        self,
        store: Store,
        bot: Bot,
        screen: ConsoleScreen,
        ask: Callable[[str], str],
        tick: Tick | None = None,
    ):
        self.store = store
        self.bot = bot
        self.screen = screen
        self.ask = ask
        self.tick = tick
        self.me: Person | None = None
        self.held_seen = 0  # the last held outbox message announced

    def current(self) -> Person | None:
        return self.me

    def switch(self, handle: str) -> bool:
        with self.store.session() as session:
            member = stored_members.member_by(
                session, handle=handle.lower()
            ) or stored_members.member_by(session, email=handle)
        if member is None:
            known = self._handles()
            missing = text_for("console_no_such_member", handle=handle, known=known)
            self.screen.out.print(f"[red]{escape(missing)}[/red]")
            return False
        self.me = Person.of(member)
        with self.store.session() as session:
            waiting = leads.count_open_leads(session, member_id=member.id or 0)
        you = text_for("console_you_are", name=member.name, role=member.role, waiting=waiting)
        self.screen.out.print(f"[bold]{escape(you)}[/bold]")
        return True

    def first_rep(self) -> str | None:
        """Who the console starts as: the first rep, else the first member."""
        with self.store.session() as session:
            reps = stored_members.members_with_role(session, role="rep")
            members = reps or stored_members.all_members(session)
            return members[0].handle if members else None

    def _handles(self) -> list[str]:
        with self.store.session() as session:
            return [m.handle for m in stored_members.all_members(session)]

    async def run(self) -> None:
        while True:
            try:
                line = self.ask(f"{self.me.handle if self.me else '?'}> ").strip()
            except EOFError:
                return
            if line in ("/quit", "/exit"):
                return
            if not line:
                continue
            await self.line(line)

    async def line(self, line: str) -> None:
        """Act on one typed line (what it owes others is delivered right after)."""
        if line.startswith("/tick"):
            await self.jump(line[5:].strip())
            return
        await self._line(line)

    def announce_held(self, now: datetime) -> None:
        """Say which new messages wait for their recipients' working hours, and until when."""
        with self.store.session() as session:
            held = held_since(session, now=now, after_id=self.held_seen)
            recipients = {
                row.id: stored_members.get_member(session, member_id=row.member_id)
                for row in held
                if row.member_id is not None
            }
        for row in held:
            self.held_seen = row.id or self.held_seen
            member = recipients.get(row.id)
            note = text_for(
                "console_held",
                name=member.name if member else row.target,
                title=card_from_dict(row.card).summary,
                at=when(row.not_before, member.timezone if member else None),
                iso=row.not_before.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            )
            self.screen.out.print(f"[dim]{escape(note)}[/dim]")

    async def jump(self, at: str) -> None:
        """`/tick 2026-11-24T12:00`: one scheduler pass as if the clock read that time."""
        try:
            moment = datetime.fromisoformat(at) if at else datetime.now(UTC)
        except ValueError:
            self.screen.out.print(f"[red]{escape(text_for('console_tick_usage'))}[/red]")
            return
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if self.tick is not None:
            await self.tick(moment)
        self.screen.out.print(
            escape(text_for("console_ticked", at=moment.isoformat(timespec="minutes")))
        )
        self.announce_held(moment)

    async def _line(self, line: str) -> None:
        if line.startswith("/as"):
            self.switch(line[3:].strip())
            return
        if self.me is None:
            self.screen.out.print(escape(text_for("console_pick_member", known=self._handles())))
            return
        if line.isdigit():
            await self.press(int(line))
            return
        command, _, rest = line.lstrip("/").partition(" ")
        interaction = Interaction(
            Kind.command, command.lower(), self.me, Where(PLATFORM, self.me.handle), text=rest
        )
        await self._handle(interaction)

    async def press(self, number: int) -> None:
        button = self.screen.buttons.get(number)
        if button is None or self.me is None:
            self.screen.out.print(
                f"[red]{escape(text_for('console_no_button', number=number))}[/red]"
            )
            return
        await self._handle(self._interaction(Kind.action, button.action, decode(button.value)))

    def _interaction(
        self,
        kind: Kind,
        name: str,
        args: dict[str, str],
        values: dict[str, list[str]] | None = None,
        request_id: str = "",
    ) -> Interaction:
        assert self.me is not None
        where = Where(PLATFORM, self.me.handle)
        return Interaction(kind, name, self.me, where, args, values or {}, request_id)

    async def _handle(self, interaction: Interaction) -> None:
        responder = ConsoleResponder(self.screen)
        await self._run(interaction, responder)
        while responder.pending_form is not None and self.me is not None:
            form, responder.pending_form = responder.pending_form, None
            values = self.fill(form)
            if values is None:
                self.screen.out.print(text_for("console_cancelled"))
                return
            submit = self._interaction(
                Kind.form, form.name, dict(form.state), values, f"form:{form.state['nonce']}"
            )
            effects = await self._run(submit, responder)
            if any(isinstance(e, FormErrors) for e in effects):
                responder.pending_form = form

    async def _run(self, interaction: Interaction, responder: ConsoleResponder) -> list[Effect]:
        """Handle one interaction, then let the scheduler deliver what it owed others
        (and show what waits for someone's working hours)."""
        effects = await self.bot.handle(interaction, responder)
        moment = datetime.now(UTC)
        if self.tick is not None:
            await self.tick(moment)
        self.announce_held(moment)
        return effects

    def fill(self, form: Form) -> dict[str, list[str]] | None:
        """Ask each input of the form in turn; `/cancel` abandons it."""
        out = self.screen.out
        out.print(f"[bold]{escape(form.title)}[/bold]")
        if form.intro:
            out.print(escape(form.intro))
        values: dict[str, list[str]] = {}
        for spec in form.inputs:
            answer = self._ask_one(spec)
            if answer is None:
                return None
            values[spec.name] = answer
        return values

    def _ask_one(self, spec: Input) -> list[str] | None:
        """One input's answer (None for `/cancel`); Enter keeps a pre-filled value."""
        optional = "" if spec.required or spec.initial else text_for("console_skip")
        if spec.kind in (InputKind.select, InputKind.multiselect):
            for n, option in enumerate(spec.options, 1):
                mark = " *" if option.value in spec.initial else ""
                self.screen.out.print(f"  [cyan]{n}[/cyan]. {escape(option.label)}{mark}")
            multiple = spec.kind is InputKind.multiselect
            hint = text_for("console_pick_many" if multiple else "console_pick_one")
            keep = text_for("console_keep_marked") if spec.initial else ""
            raw = self.ask(f"{spec.label} ({hint}){keep}{optional}: ").strip()
            if raw == "/cancel":
                return None
            if not raw and spec.initial:
                return list(spec.initial)
            picked = [p.strip() for p in raw.replace(" ", ",").split(",") if p.strip()]
            return [
                spec.options[int(p) - 1].value
                if p.isdigit() and 0 < int(p) <= len(spec.options)
                else p
                for p in picked
            ]
        if spec.kind is InputKind.multiline and spec.initial and "\n" in spec.initial[0]:
            return self._ask_lines(spec)
        hint = " (YYYY-MM-DD)" if spec.kind is InputKind.date else ""
        keep = f" [{spec.initial[0]}]" if spec.initial and spec.initial[0] else ""
        raw = self.ask(f"{spec.label}{hint}{keep}{optional}: ")
        if raw.strip() == "/cancel":
            return None
        if not raw.strip() and keep:
            return [spec.initial[0]]
        return [raw]

    def _ask_lines(self, spec: Input) -> list[str] | None:
        """A pre-filled text of several lines (a list to edit): shown, then typed anew line
        by line up to an empty line; Enter on the first line keeps it as it is."""
        self.screen.out.print(escape(f"{spec.label}:"))
        for line in spec.initial[0].splitlines():
            self.screen.out.print(f"  {escape(line)}")
        lines: list[str] = []
        while True:
            raw = self.ask(text_for("console_lines_prompt") if not lines else "… ")
            if raw.strip() == "/cancel":
                return None
            if not raw.strip():
                return ["\n".join(lines)] if lines else [spec.initial[0]]
            lines.append(raw)


def make_ask(console: Console) -> Callable[[str], str]:
    def ask(prompt: str) -> str:
        return console.input(escape(prompt))

    return ask


async def run_console(
    store: Store,
    bot_factory: Callable[[ConsoleMessenger], tuple[Bot, Tick]],
    out: Console,
    start_as: str | None,
) -> None:
    """Start the chat loop, acting as `start_as` (or the first rep) to begin with."""
    screen = ConsoleScreen(out)
    chat: ConsoleChat
    messenger = ConsoleMessenger(screen, lambda: chat.current())
    bot, tick = bot_factory(messenger)
    chat = ConsoleChat(store, bot, screen, make_ask(out), tick)
    out.print(escape(text_for("console_welcome")))
    first = start_as or chat.first_rep()
    if first:
        chat.switch(first)
    else:
        out.print(escape(text_for("console_no_members")))
    await chat.run()
    await asyncio.sleep(0)
