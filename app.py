"""Liaison's entry point: read settings, wire storage, handlers and adapters, and start."""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlmodel import col, select

from bot.delivery import Bot, Deliverer, Directory, Messenger
from bot.router import Router
from bot.server import platform_messengers
from bot.settings import Settings
from bot.teams_trust import emulator_bind_problem
from digests.business_time import Company, format_clock, parse_hours, parse_workdays
from digests.demo import create_demo, settle_history
from digests.scheduler import AsyncDueWork, Clockwork, for_settings
from handlers import (
    approvals,
    clocks,
    content,
    digest,
    feedback,
    general,
    home,
    insights,
    leads,
    proposals,
    questions,
    sla,
    tone,
    wins,
)
from handlers.ingest import Ingestor, validate
from storage import approvals as approval_store
from storage import queries
from storage.db import Store, reason, safe_url, unavailable
from storage.models import ApprovalSubject

cli = typer.Typer(
    help="Liaison: the neutral go-between for sales and marketing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
members_cli = typer.Typer(help="Who is who.", no_args_is_help=True)
leaddef_cli = typer.Typer(help="The lead definition.", no_args_is_help=True)
channels_cli = typer.Typer(help="Where Liaison posts.", no_args_is_help=True)
outbox_cli = typer.Typer(help="Messages Liaison owes: list and retry.", invoke_without_command=True)
sla_cli = typer.Typer(help="The two-sided service-level agreement.", no_args_is_help=True)
holidays_cli = typer.Typer(help="Company holidays (no SLA clock runs).", no_args_is_help=True)
campaigns_cli = typer.Typer(help="Campaigns and their marketers.", no_args_is_help=True)
approvers_cli = typer.Typer(
    help="Who signs off new lead-definition and SLA versions.", no_args_is_help=True
)
insights_cli = typer.Typer(help="Buyer insights from the field.", no_args_is_help=True)
for name, sub in (
    ("db", db_cli),
    ("members", members_cli),
    ("leaddef", leaddef_cli),
    ("channels", channels_cli),
    ("campaigns", campaigns_cli),
    ("sla", sla_cli),
    ("outbox", outbox_cli),
    ("holidays", holidays_cli),
    ("approvers", approvers_cli),
    ("insights", insights_cli),
):
    cli.add_typer(sub, name=name)

out = Console(soft_wrap=True)
CHANNEL_KINDS = ("digest", "wins", "insights", "handoff", "admin")


def build_router(company: Company | None = None, channels: dict[str, str] | None = None) -> Router:
    """Every capability, registered explicitly; `channels` are the settings' defaults."""
    router = Router(company=company or Company(), channels=dict(channels or {}))
    general.register(router)
    leads.register(router)
    questions.register(router)
    sla.register(router)
    clocks.register(router)
    tone.register(router)
    home.register(router)
    digest.register(router)
    approvals.register(router)
    feedback.register(router)
    content.register(router)
    insights.register(router)
    wins.register(router)
    return router


def load_settings() -> Settings:
    """The settings, or a clear message naming the bad variable (never a traceback)."""
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            name = problem["loc"][0] if problem["loc"] else "settings"
            out.print(f"[red]{name}: {problem['msg']}[/red]")
        raise typer.Exit(2) from None
    if teams := settings.teams_credentials_problem():
        out.print(f"[red]{teams}[/red]")
        raise typer.Exit(2)
    return settings


def open_store(settings: Settings) -> Store:
    """The migrated store; without a database that answers, one line saying so and exit 1."""
    try:
        return Store.open(settings.database_url)
    except Exception as error:
        if not unavailable(error):
            raise
        typer.echo(
            f"database unreachable at {safe_url(settings.database_url)}: {reason(error)}",
            err=True,
        )
        raise typer.Exit(1) from None


def now() -> datetime:
    return datetime.now(UTC)


@cli.callback()
def _logging(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # Not two lines per tick ("Running job…", "…executed successfully"); faults still show.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler")] = False,
) -> None:
    """HTTP server: /slack/events, /api/messages, /api/leads and /healthz."""
    from aiohttp import web

    from bot.server import build_web_app

    settings = load_settings()
    if refused := emulator_bind_problem(settings.teams_mode, host):
        out.print(f"[red]{refused}[/red]")
        raise typer.Exit(2)
    store = open_store(settings)
    router = build_router(settings.company, settings.channels())
    web.run_app(
        build_web_app(settings, store, router, scheduler=not no_scheduler),
        host=host,
        port=port,
        print=lambda msg: logging.getLogger("liaison").info("%s", msg),
    )


@cli.command()
def socket() -> None:
    """Slack Socket Mode (needs SLACK_APP_TOKEN)."""
    from bot.slack import SlackMessenger, run_socket_mode
    from digests.click_updates import ClickUpdates

    settings = load_settings()
    if settings.slack_app_token is None or not settings.slack_enabled:
        out.print("[red]Socket Mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN (xapp-…).[/red]")
        raise typer.Exit(2)
    store = open_store(settings)
    messengers = platform_messengers(settings, store)
    deliverer = Deliverer(store, messengers, _directories(messengers))
    bot = Bot(store, build_router(settings.company, settings.channels()), deliverer)
    slack_messenger = next(m for m in messengers if isinstance(m, SlackMessenger))

    async def run() -> None:
        clockwork = for_settings(settings, store, deliverer, _lookups(settings, deliverer))
        deliverer.on_owed = clockwork.wake
        deliverer.updates = ClickUpdates(clockwork.sender, clockwork.wake)
        clockwork.start()
        try:
            await run_socket_mode(settings, slack_messenger.client, store, bot)
        finally:
            clockwork.stop()

    asyncio.run(run())


@cli.command()
def console(
    as_: Annotated[str | None, typer.Option("--as", help="Start as this member")] = None,
) -> None:
    """A local chat in the terminal: act as any member, press buttons, fill forms."""
    from bot.console import ConsoleMessenger, run_console

    settings = load_settings()
    store = open_store(settings)
    router = build_router(settings.company, settings.channels())

    def make_bot(messenger: ConsoleMessenger) -> tuple[Bot, Callable[[datetime], Any]]:
        deliverer = Deliverer(store, [messenger])
        clockwork = for_settings(settings, store, deliverer)
        clockwork.start_in_background()
        return Bot(store, router, deliverer), clockwork.run_once

    logging.getLogger().setLevel(logging.WARNING)
    asyncio.run(run_console(store, make_bot, Console(), as_))  # wrapping, unlike `out`


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations to head (also done on every start)."""
    open_store(load_settings())
    out.print("Database is at the latest schema.")


@cli.command("import-leads")
def import_leads(file: Path) -> None:
    """Bulk import leads from a CSV file (same fields and idempotency as the webhook)."""
    settings = load_settings()
    store = open_store(settings)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        out.print(f"[red]Cannot read {file}: {error}[/red]")
        raise typer.Exit(2) from error
    items = [
        {k: v for k, v in row.items() if k is not None and v not in (None, "")} for row in rows
    ]
    good, problems = validate(items, now=now())
    bad_rows = {p.index for p in problems}
    for problem in problems:
        # Row 1 is the header, so data row i is line i + 2.
        out.print(
            f"[red]row {problem.index + 2}[/red]: {problem.field or 'row'}: {problem.message}"
        )
    ingestor = _ingestor(settings, store)
    created = duplicates = 0
    with Progress(console=out) as progress:
        task = progress.add_task("Importing leads", total=len(good))
        for start in range(0, len(good), 200):
            batch = good[start : start + 200]
            outcomes = asyncio.run(ingestor.ingest(batch, now=now()))
            created += sum(o.status == "created" for o in outcomes)
            duplicates += sum(o.status == "duplicate" for o in outcomes)
            progress.advance(task, len(batch))
    out.print(f"{created} imported, {duplicates} already known, {len(bad_rows)} rows refused.")
    if created:
        asyncio.run(_deliver_owed(ingestor.deliverer, settings, store))
    if bad_rows:
        raise typer.Exit(1)


async def _deliver_owed(deliverer: Deliverer, settings: Settings, store: Store) -> None:
    """Drain the outbox with a progress bar (Slack takes about one message a second per
    person); what waits for someone's working hours is left to `serve` or `tick`."""
    from digests.outbox import SendReport, due_count

    def due() -> int:
        with store.session() as session:
            return due_count(session, now=now())

    clockwork = Clockwork(
        store,
        deliverer,
        settings.company,
        lease_seconds=settings.outbox_lease_seconds,
        admin_channel=settings.default_channel("admin"),
    )
    report = SendReport()
    total = await asyncio.to_thread(due)
    with Progress(console=out) as progress:
        task = progress.add_task("Delivering cards", total=total)
        sending = asyncio.create_task(clockwork.sender.drain(now(), report=report))
        while not sending.done():
            progress.update(task, completed=report.sent + report.failed + report.retried)
            await asyncio.sleep(0.1)
        progress.update(task, completed=total)
        sending.result()
    held = await asyncio.to_thread(_held, store)
    out.print(
        f"{report.sent} cards delivered, {report.retried} to retry, {report.failed} failed"
        + (f", {held} waiting for their recipients' working hours" if held else "")
        + (" (see `liaison outbox`)." if report.failed else ".")
    )


def _held(store: Store) -> int:
    from digests.outbox import held_count

    with store.session() as session:
        return held_count(session, now=now())


def _directories(messengers: list[Messenger]) -> list[Directory]:
    return [m for m in messengers if isinstance(m, Directory)]


def _lookups(settings: Settings, deliverer: Deliverer) -> list[AsyncDueWork]:
    """The scheduler's retries of failed owner lookups (leads waiting as `routing`)."""
    ingestor = Ingestor(
        deliverer.store,
        deliverer,
        deliverer.directories,
        settings.default_channel("admin"),
        settings.company,
        threads=settings.ingest_threads,
    )
    return [ingestor.retry_routing]


def _ingestor(settings: Settings, store: Store) -> Ingestor:
    messengers = platform_messengers(settings, store)
    directories = _directories(messengers)
    return Ingestor(
        store,
        Deliverer(store, messengers, directories),
        directories,
        settings.default_channel("admin"),
        settings.company,
        threads=settings.ingest_threads,
    )


class LeadsPerSecond(ProgressColumn):
    """How fast the demo writes leads."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} leads/s" if speed else "", style="progress.data.speed")


@cli.command()
def demo(
    leads: Annotated[int, typer.Option(min=0, help="leads over the last 26 weeks")] = 1500,
    seed: Annotated[int, typer.Option(help="another seed, another company")] = 7,
) -> None:
    """Fill the database with a reproducible demo company (running it again adds nothing)."""
    settings = load_settings()
    store = open_store(settings)
    started = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        LeadsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out) as progress, store.session() as session:
        task = progress.add_task("Demo company", total=leads)
        created = create_demo(
            session,
            leads=leads,
            seed=seed,
            now=now(),
            company=settings.company,
            progress=lambda n: progress.advance(task, n),
        )
    settle_history(store, now=now(), company=settings.company)
    out.print(
        f"Demo company ready: {created} new leads ({leads - created} were already there) "
        f"in {time.perf_counter() - started:.1f} s. Try `liaison console`."
    )


DIGEST_FORMATS = ("text", "json", "slack", "teams", "markdown", "html")


@cli.command("digest")
def digest_command(
    week: Annotated[str | None, typer.Option(help="ISO week like 2026-W48; default: last")] = None,
    format_: Annotated[str, typer.Option("--format", help="|".join(DIGEST_FORMATS))] = "text",
    post: Annotated[bool, typer.Option("--post", help="post it to the digest channel")] = False,
) -> None:
    """Build a weekly digest and print it (or post it with --post)."""
    import json

    from bot.slack_blocks import report_blocks
    from bot.teams_cards import report_card
    from digests.chart import chart_png
    from digests.digest import Week, build
    from digests.report import document, report

    if format_ not in DIGEST_FORMATS:
        out.print(f"[red]--format is one of {', '.join(DIGEST_FORMATS)}.[/red]")
        raise typer.Exit(2)
    settings = load_settings()
    tz = settings.timezone
    try:
        chosen = Week.of(week, tz) if week else Week.last_complete(now(), tz)
    except ValueError as error:
        out.print(f"[red]--week {error}.[/red]")
        raise typer.Exit(2) from None
    store = open_store(settings)
    if post:
        _post_digest(settings, store, chosen)
        return
    with out.status(f"Building the digest of {chosen.label}…"), store.session() as session:
        made = build(session, chosen, now=now())
        version = queries.current_policy(session).version
    if format_ == "json":
        typer.echo(json.dumps(made.to_json(), indent=2))
        return
    chart = chart_png(made) if format_ in ("slack", "teams", "html") else None
    rendered = report(made, version=version, chart=chart)
    if format_ == "slack":
        typer.echo(json.dumps({"blocks": report_blocks(rendered)}, indent=2))
    elif format_ == "teams":
        typer.echo(json.dumps(report_card(rendered), indent=2))
    else:
        typer.echo(document(rendered, format_), nl=False)


def _post_digest(settings: Settings, store: Store, week: Any) -> None:
    """Owe the digest of `week` to the digest channel (once: its key is the week) and send."""
    from digests.weekly import digest_message

    with store.session() as session:
        target = queries.channel_target(session, kind="digest") or settings.default_channel(
            "digest"
        )
    if not target:
        out.print(
            "[red]No digest channel: `liaison channels set digest slack:C0123` "
            "(or LIAISON_DIGEST_CHANNEL).[/red]"
        )
        raise typer.Exit(2)
    with out.status(f"Building the digest of {week.label}…"), store.session() as session:
        message = digest_message(session, week, target=target, now=now())
        owed = queries.enqueue_many(session, messages=[message])
    if not owed:
        out.print(f"The {week.label} digest was already posted (see `liaison outbox`).")
        return
    messengers = platform_messengers(settings, store)
    clockwork = for_settings(settings, store, Deliverer(store, messengers))
    sent = asyncio.run(clockwork.sender.drain(now()))
    verdict = "posted" if sent.sent else "not posted yet (see `liaison outbox`)"
    out.print(f"The {week.label} digest is {verdict} to {target}.")


@leaddef_cli.command("set")
def leaddef_set(file: Path, by: str = "admin (CLI)") -> None:
    """Create a new lead-definition version from YAML (`criteria: [{key, text}]`; a
    criterion given as `{text}` or as just its text gets a key made from the text)."""
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8"))
        given = [_criterion(c) for c in spec["criteria"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        out.print(
            f"[red]{file} is not a lead definition: {error}[/red]\n"
            "Expected:\ncriteria:\n  - key: budget\n    text: Budget confirmed\n"
            "  - Uses a CRM"
        )
        raise typer.Exit(2) from error
    keys = [k for k, _ in given if k]
    if not given or any(not t for _, t in given) or len(set(keys)) != len(keys):
        out.print("[red]Each criterion needs a text, and each key given must be unique.[/red]")
        raise typer.Exit(2)
    store = open_store(load_settings())
    note = str(spec.get("note", ""))
    with store.session() as session:
        base, current = queries.current_definition(session)
        criteria = proposals.with_keys(
            given,
            current=[(c.key, c.text) for c in current],
            used=queries.criterion_keys(session),
        )
        definition = queries.create_definition(
            session, criteria=criteria, note=note, created_by=by, now=now()
        )
        changes = proposals.criteria_changes([(c.key, c.text) for c in current], criteria)
        record = approval_store.record_bootstrap(
            session,
            subject=ApprovalSubject.leaddef,
            label=by,
            payload={"base_version": base.version, "criteria": criteria, **changes},
            note=note,
            version=definition.version,
            now=now(),
        )
        waiting = approvals.still_waiting(session)
    out.print(
        f"Lead definition v{definition.version} is now in force ({len(criteria)} criteria), "
        f"set without sign-off (recorded as approval #{record.id})."
    )
    made = [f"{k} ({t})" for (k, t), (g, _) in zip(criteria, given, strict=True) if not g]
    if made:
        out.print(escape("Keys made from the text: " + ", ".join(made)))
    _mention_waiting(waiting)


def _criterion(entry: Any) -> tuple[str | None, str]:
    """One YAML criterion: `{key, text}`, `{text}` or just the text."""
    if isinstance(entry, str):
        return None, entry.strip()
    key = entry.get("key")
    return (str(key).strip() or None) if key is not None else None, str(entry["text"]).strip()


def _mention_waiting(waiting: list[int]) -> None:
    if waiting:
        ids = ", ".join(f"#{i}" for i in waiting)
        out.print(f"Still waiting for sign-off: approval {ids} (`/approvals ID` in chat).")


@cli.command()
def tick(
    at: Annotated[str | None, typer.Option(help="ISO-8601 time to act as if it were")] = None,
) -> None:
    """One scheduler pass: SLA reminders, breaches, escalations, then outbox delivery."""
    moment = now()
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            out.print(f"[red]--at {at!r} is not an ISO-8601 time (e.g. 2026-11-24T14:00Z).[/red]")
            raise typer.Exit(2) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    settings = load_settings()
    store = open_store(settings)
    messengers = platform_messengers(settings, store)
    deliverer = Deliverer(store, messengers, _directories(messengers))
    clockwork = for_settings(settings, store, deliverer, _lookups(settings, deliverer))
    result = asyncio.run(clockwork.run_once(moment))
    out.print(
        f"Tick at {moment.isoformat()}: {result.tick.looked_at} due items looked at "
        "(SLA clocks, feedback, approvals, digests, owner lookups), "
        f"{result.tick.messages} messages owed; {result.sent.sent} sent, "
        f"{result.sent.retried} to retry, {result.sent.failed} failed."
    )


@outbox_cli.callback()
def outbox_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending|sending|sent|failed")] = None,
    limit: int = 50,
) -> None:
    """List the outbox (newest first); `liaison outbox retry` puts failed ones back in line."""
    if ctx.invoked_subcommand is not None:
        return
    from storage.models import OutboxMessage

    store = open_store(load_settings())
    table = Table("id", "key", "to", "status", "attempts", "not before", "parts done", "error")
    with store.session() as session:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
        if status:
            query = query.where(OutboxMessage.status == status)
        for row in session.exec(query).all():
            to = f"member {row.member_id}" if row.member_id else (row.target or "-")
            table.add_row(
                str(row.id),
                row.key,
                to,
                row.status,
                str(row.attempts),
                row.not_before.isoformat(timespec="minutes"),
                "all" if row.status == "sent" else ", ".join(row.parts_done or {}),
                row.last_error or "",
            )
    out.print(table)


@outbox_cli.command("retry")
def outbox_retry(ids: Annotated[list[int] | None, typer.Argument()] = None) -> None:
    """Put failed messages (all, or the given ids) back in line for the next tick."""
    from digests.outbox import retry

    store = open_store(load_settings())
    with store.session() as session:
        count = retry(session, ids=ids, now=now())
    out.print(f"{count} message{'s' if count != 1 else ''} back in line.")


@sla_cli.command("set")
def sla_set(file: Path, by: str = "admin (CLI)") -> None:
    """Create a new SLA version from YAML; what the file leaves out keeps its value."""
    from pydantic import ValidationError

    from handlers.sla import SlaFile

    try:
        spec = SlaFile.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as error:
        out.print(f"[red]Cannot read {file}: {error}[/red]")
        raise typer.Exit(2) from error
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in problem["loc"])
            out.print(f"[red]{file}: {where}: {problem['msg']}[/red]")
        raise typer.Exit(2) from error
    store = open_store(load_settings())
    with store.session() as session:
        base = queries.current_policy(session)
        policy = queries.create_policy(
            session, fields=spec.fields(), note=spec.note, created_by=by, now=now()
        )
        fields = {name: getattr(policy, name) for name in proposals.SLA_FIELDS}
        changed = [
            [name, getattr(base, name), value]
            for name, value in fields.items()
            if getattr(base, name) != value
        ]
        record = approval_store.record_bootstrap(
            session,
            subject=ApprovalSubject.sla,
            label=by,
            payload={"base_version": base.version, "fields": fields, "changed": changed},
            note=spec.note,
            version=policy.version,
            now=now(),
        )
        waiting = approvals.still_waiting(session)
    out.print(
        f"SLA v{policy.version} is now in force, set without sign-off "
        f"(recorded as approval #{record.id})."
    )
    _mention_waiting(waiting)


@holidays_cli.command("add")
def holidays_add(day: str, name: str = "") -> None:
    """A company holiday (YYYY-MM-DD): no SLA clock runs and no reminder goes out."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        out.print(f"[red]{day!r} is not a date: use YYYY-MM-DD.[/red]")
        raise typer.Exit(2) from None
    store = open_store(load_settings())
    with store.session() as session:
        queries.add_holiday(session, day=parsed, name=name)
    out.print(f"{parsed:%a %d %b %Y} is a holiday{f' ({name})' if name else ''}.")


@holidays_cli.command("list")
def holidays_list() -> None:
    """The company holidays."""
    store = open_store(load_settings())
    with store.session() as session:
        days = queries.holidays(session)
    out.print("\n".join(f"{d:%Y-%m-%d %a}" for d in days) or "No holidays set.")


@members_cli.command("set")
def members_set(
    email: str,
    role: Annotated[str | None, typer.Option(help="rep|marketer|manager|leader|admin")] = None,
    manager: Annotated[str | None, typer.Option(help="the manager's email")] = None,
    team: Annotated[str | None, typer.Option(help="sales|marketing")] = None,
    timezone: str | None = None,
    name: str | None = None,
    hours: Annotated[str | None, typer.Option(help="working hours, e.g. 08:30-17:00")] = None,
    workdays: Annotated[
        str | None, typer.Option(help="e.g. mon-fri or sun,mon,tue,wed,thu")
    ] = None,
) -> None:
    """Create or update a member."""
    from zoneinfo import available_timezones

    if role and role not in ("rep", "marketer", "manager", "leader", "admin"):
        out.print(f"[red]Unknown role {role!r}: use rep, marketer, manager, leader or admin.[/red]")
        raise typer.Exit(2)
    if team and team not in ("sales", "marketing"):
        out.print("[red]--team is sales or marketing.[/red]")
        raise typer.Exit(2)
    if timezone and timezone not in available_timezones():
        out.print(f"[red]Unknown time zone {timezone!r} (e.g. Europe/Berlin).[/red]")
        raise typer.Exit(2)
    if "@" not in email:
        out.print(f"[red]{email!r} is not an email address.[/red]")
        raise typer.Exit(2)
    work = _parse_hours(hours) if hours else (None, None)
    days = _parse_workdays(workdays) if workdays else None
    store = open_store(load_settings())
    with store.session() as session:
        boss = queries.member_by(session, email=manager) if manager else None
        if manager and boss is None:
            out.print(f"[red]No member with email {manager}; add the manager first.[/red]")
            raise typer.Exit(2)
        member = queries.upsert_member(
            session,
            now=now(),
            email=email,
            name=name,
            role=role,
            team=team,
            timezone=timezone,
            rename=bool(name),
            manager_id=boss.id if boss else None,
            work_start=work[0],
            work_end=work[1],
            workdays=days,
        )
        out.print(
            f"{member.name} <{member.email}>: {member.role}"
            + (f", manager {boss.name}" if boss else "")
        )


def _parse_hours(text: str) -> tuple[str, str]:
    """`08:30-17:00` → ("08:30", "17:00"), or exit with the right usage."""
    try:
        start, end = parse_hours(text)
    except ValueError as error:
        out.print(f"[red]--hours {error}.[/red]")
        raise typer.Exit(2) from None
    return format_clock(start), format_clock(end)


def _parse_workdays(text: str) -> str:
    """`mon-fri` or `sun,mon,tue` → "0,1,2,3,4" (Monday = 0)."""
    try:
        days = parse_workdays(text)
    except ValueError as error:
        out.print(f"[red]--workdays {error}.[/red]")
        raise typer.Exit(2) from None
    return ",".join(str(d) for d in sorted(days))


@members_cli.command("list")
def members_list() -> None:
    """Who is known, with roles, managers and platforms."""
    store = open_store(load_settings())
    table = Table("handle", "name", "email", "role", "team", "manager", "time zone", "platforms")
    with store.session() as session:
        for m in queries.all_members(session):
            boss = queries.get_member(session, member_id=m.manager_id) if m.manager_id else None
            platforms = (
                ", ".join(
                    p for p, on in (("slack", m.slack_user_id), ("teams", m.teams_user_id)) if on
                )
                or "-"
            )
            table.add_row(
                m.handle,
                m.name,
                m.email or "-",
                m.role,
                m.team or "-",
                boss.name if boss else "-",
                m.timezone or "-",
                platforms,
            )
    out.print(table)


@channels_cli.command("set")
def channels_set(kind: str, target: str) -> None:
    """KIND is digest|wins|insights|handoff|admin; TARGET is slack:C0123 or teams:<id>."""
    if kind not in CHANNEL_KINDS:
        out.print(f"[red]KIND is one of {', '.join(CHANNEL_KINDS)}.[/red]")
        raise typer.Exit(2)
    platform, _, channel = target.partition(":")
    if platform not in ("slack", "teams") or not channel:
        out.print("[red]TARGET looks like slack:C0123ABC or teams:<conversation id>.[/red]")
        raise typer.Exit(2)
    store = open_store(load_settings())
    with store.session() as session:
        queries.set_channel(session, kind=kind, target=target)
    out.print(f"The {kind} channel is now {target}.")


@campaigns_cli.command("set")
def campaigns_set(
    name: str, marketer: Annotated[str, typer.Option(help="marketer's email")]
) -> None:
    """Name the marketer who answers reps' questions about a campaign's leads."""
    store = open_store(load_settings())
    with store.session() as session:
        member = queries.member_by(session, email=marketer)
        if member is None:
            out.print(f"[red]No member with email {marketer}.[/red]")
            raise typer.Exit(2)
        campaign = queries.ensure_campaign(session, name=name)
        campaign.marketer_id = member.id
        session.add(campaign)
    out.print(f"{member.name} answers questions about {name}.")


@approvers_cli.command("set")
def approvers_set(
    sales: Annotated[
        str | None, typer.Option(help="sales approvers' emails, comma-separated")
    ] = None,
    marketing: Annotated[
        str | None, typer.Option(help="marketing approvers' emails, comma-separated")
    ] = None,
) -> None:
    """Name who signs off new versions, per side; each list given replaces that side's."""
    store = open_store(load_settings())
    with store.session() as session:
        lists = approvals.approver_lists(session, sales=sales, marketing=marketing)
        if isinstance(lists, str):
            out.print(f"[red]{escape(lists)}[/red]")
            raise typer.Exit(2)
        names = approvals.apply_approvers(session, lists)
        waiting = approvals.still_waiting(session)
    for side in approval_store.SIDES:
        out.print(f"{side.capitalize()} approvers: {', '.join(names[side]) or 'none'}")
    if waiting:
        ids = ", ".join(f"#{i}" for i in waiting)
        out.print(f"Pending approval {ids} keeps the approvers it was sent to.")


@approvers_cli.command("list")
def approvers_list() -> None:
    """Who signs off new lead-definition and SLA versions, for each side."""
    store = open_store(load_settings())
    table = Table("side", "name", "email", "role")
    with store.session() as session:
        named = approval_store.approvers(session)
        for side, member in named:
            table.add_row(side, member.name, member.email or "-", member.role)
    if not named:
        out.print("No approvers named yet: liaison approvers set --sales EMAIL --marketing EMAIL")
        return
    out.print(table)


@insights_cli.command("duty")
def insights_duty(
    email: Annotated[str | None, typer.Argument(help="the marketer's email")] = None,
    off: Annotated[bool, typer.Option("--off", help="nobody is on duty")] = False,
) -> None:
    """Put a marketer on insights duty: insights without a campaign marketer go to them."""
    from storage import insights as stored_insights

    store = open_store(load_settings())
    with store.session() as session:
        if off or email is None:
            if not off:
                on_duty = stored_insights.duty_member_id(session)
                member = queries.get_member(session, member_id=on_duty) if on_duty else None
                out.print(f"{member.name} is on insights duty." if member else "Nobody is on duty.")
                return
            stored_insights.set_duty(session, member_id=None)
            out.print("Nobody is on insights duty: insights go to every marketer.")
            return
        member = queries.member_by(session, email=email)
        if member is None:
            out.print(f"[red]No member with email {email}.[/red]")
            raise typer.Exit(2)
        if member.role not in ("marketer", "admin"):
            out.print(
                f"[red]{member.name} is a {member.role}; only marketers and admins take insights "
                f"duty (liaison members set {email} --role marketer).[/red]"
            )
            raise typer.Exit(2)
        stored_insights.set_duty(session, member_id=member.id)
    out.print(f"{member.name} is on insights duty.")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
