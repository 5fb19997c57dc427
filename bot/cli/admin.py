"""The administrator's commands: lead definition, SLA, holidays, members, channels,
campaigns, approvers and insights duty (the rules are in handlers/admin.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from bot.cli.common import FormatOption, err, fail, load_settings, now, open_store, out, print_rows

if TYPE_CHECKING:
    from sqlmodel import Session

leaddef_cli = typer.Typer(help="The lead definition.", no_args_is_help=True)
sla_cli = typer.Typer(help="The two-sided service-level agreement.", no_args_is_help=True)
holidays_cli = typer.Typer(help="Company holidays (no SLA clock runs).", no_args_is_help=True)
members_cli = typer.Typer(help="Who is who.", no_args_is_help=True)
channels_cli = typer.Typer(help="Where Liaison posts.", no_args_is_help=True)
campaigns_cli = typer.Typer(help="Campaigns and their marketers.", no_args_is_help=True)
approvers_cli = typer.Typer(
    help="Who signs off new lead-definition and SLA versions.", no_args_is_help=True
)
insights_cli = typer.Typer(help="Buyer insights from the field.", no_args_is_help=True)

SUBCOMMANDS = {
    "members": members_cli,
    "leaddef": leaddef_cli,
    "channels": channels_cli,
    "campaigns": campaigns_cli,
    "sla": sla_cli,
    "holidays": holidays_cli,
    "approvers": approvers_cli,
    "insights": insights_cli,
}


@contextmanager
def admin_session() -> Iterator[Session]:
    """A session on the configured store; an AdminError in it is one red line and exit 2."""
    from handlers.admin import AdminError

    store = open_store(load_settings())
    try:
        with store.session() as session:
            yield session
    except AdminError as error:
        fail(str(error))


def mention_waiting(waiting: list[int]) -> None:
    if waiting:
        ids = ", ".join(f"#{i}" for i in waiting)
        out.print(f"Still waiting for sign-off: approval {ids} (`/approvals ID` in chat).")


@leaddef_cli.command("set")
def leaddef_set(file: Path, by: str = "admin (CLI)") -> None:
    """Create a new lead-definition version from YAML (`criteria: [{key, text}]`; a
    criterion given as `{text}` or as just its text gets a key made from the text)."""
    import yaml

    from handlers.admin import AdminError, check_criteria, criterion, set_lead_definition

    try:
        spec: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
        given = [criterion(c) for c in spec["criteria"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        err.print(
            f"[red]{file} is not a lead definition: {error}[/red]\n"
            "Expected:\ncriteria:\n  - key: budget\n    text: Budget confirmed\n"
            "  - Uses a CRM"
        )
        raise typer.Exit(2) from error
    try:
        check_criteria(given)
    except AdminError as error:
        fail(str(error))
    with admin_session() as session:
        made = set_lead_definition(
            session, given=given, note=str(spec.get("note", "")), by=by, now=now()
        )
    out.print(
        f"Lead definition v{made.version} is now in force ({len(made.criteria)} criteria), "
        f"set without sign-off (recorded as approval #{made.approval_id})."
    )
    if made.made_keys:
        out.print(escape("Keys made from the text: " + ", ".join(made.made_keys)))
    mention_waiting(made.waiting)


@sla_cli.command("set")
def sla_set(file: Path, by: str = "admin (CLI)") -> None:
    """Create a new SLA version from YAML; what the file leaves out keeps its value."""
    import yaml
    from pydantic import ValidationError

    from handlers.admin import set_sla
    from handlers.sla import SlaFile

    try:
        spec = SlaFile.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as error:
        err.print(f"[red]Cannot read {file}: {error}[/red]")
        raise typer.Exit(2) from error
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in problem["loc"])
            err.print(f"[red]{file}: {where}: {problem['msg']}[/red]")
        raise typer.Exit(2) from error
    with admin_session() as session:
        made = set_sla(session, spec=spec, by=by, now=now())
    out.print(
        f"SLA v{made.version} is now in force, set without sign-off "
        f"(recorded as approval #{made.approval_id})."
    )
    mention_waiting(made.waiting)


@holidays_cli.command("add")
def holidays_add(day: str, name: str = "") -> None:
    """A company holiday (YYYY-MM-DD): no SLA clock runs and no reminder goes out."""
    from storage import away

    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        fail(f"{day!r} is not a date: use YYYY-MM-DD.")
    with admin_session() as session:
        away.add_holiday(session, day=parsed, name=name)
    out.print(f"{parsed:%a %d %b %Y} is a holiday{f' ({name})' if name else ''}.")


@holidays_cli.command("list")
def holidays_list() -> None:
    """The company holidays."""
    from storage import away

    with admin_session() as session:
        days = away.holidays(session)
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
    from handlers.admin import AdminError, member_fields, set_member

    try:
        fields = member_fields(
            email=email,
            role=role,
            team=team,
            timezone=timezone,
            name=name,
            hours=hours,
            workdays=workdays,
        )
    except AdminError as error:
        fail(str(error))
    with admin_session() as session:
        member, boss = set_member(session, fields, manager=manager, now=now())
        out.print(
            f"{member.name} <{member.email}>: {member.role}"
            + (f", manager {boss.name}" if boss else "")
        )


@members_cli.command("list")
def members_list(format_: FormatOption = "table") -> None:
    """Who is known, with roles, managers and platforms."""
    from storage import members as stored_members

    with admin_session() as session:
        members = stored_members.all_members(session)
        names = {m.id: m.name for m in members}
        rows = [
            (
                m.handle,
                m.name,
                m.email or "-",
                m.role,
                m.team or "-",
                names.get(m.manager_id, "-") if m.manager_id else "-",
                m.timezone or "-",
                ", ".join(
                    p for p, on in (("slack", m.slack_user_id), ("teams", m.teams_user_id)) if on
                )
                or "-",
            )
            for m in members
        ]
    columns = ("handle", "name", "email", "role", "team", "manager", "time zone", "platforms")
    print_rows(columns, rows, format_)


@channels_cli.command("set")
def channels_set(kind: str, target: str) -> None:
    """KIND is digest|wins|insights|handoff|admin; TARGET is slack:C0123 or teams:<id>."""
    from handlers.admin import AdminError, check_channel
    from storage import channels as stored_channels

    try:
        check_channel(kind, target)
    except AdminError as error:
        fail(str(error))
    with admin_session() as session:
        stored_channels.set_channel(session, kind=kind, target=target)
    out.print(f"The {kind} channel is now {target}.")


@campaigns_cli.command("set")
def campaigns_set(
    name: str, marketer: Annotated[str, typer.Option(help="marketer's email")]
) -> None:
    """Name the marketer who answers reps' questions about a campaign's leads."""
    from handlers.admin import set_campaign_marketer

    with admin_session() as session:
        member = set_campaign_marketer(session, campaign=name, marketer=marketer)
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
    from handlers import approvals
    from storage.approvals import SIDES

    with admin_session() as session:
        lists = approvals.approver_lists(session, sales=sales, marketing=marketing)
        if isinstance(lists, str):
            fail(lists)
        names = approvals.apply_approvers(session, lists)
        waiting = approvals.still_waiting(session)
    for side in SIDES:
        out.print(f"{side.capitalize()} approvers: {', '.join(names[side]) or 'none'}")
    if waiting:
        ids = ", ".join(f"#{i}" for i in waiting)
        out.print(f"Pending approval {ids} keeps the approvers it was sent to.")


@approvers_cli.command("list")
def approvers_list(format_: FormatOption = "table") -> None:
    """Who signs off new lead-definition and SLA versions, for each side."""
    from storage.approvals import approvers

    with admin_session() as session:
        rows = [(side, m.name, m.email or "-", m.role) for side, m in approvers(session)]
    if not rows and format_ == "table":
        out.print("No approvers named yet: liaison approvers set --sales EMAIL --marketing EMAIL")
        return
    print_rows(("side", "name", "email", "role"), rows, format_)


@insights_cli.command("duty")
def insights_duty(
    email: Annotated[str | None, typer.Argument(help="the marketer's email")] = None,
    off: Annotated[bool, typer.Option("--off", help="nobody is on duty")] = False,
) -> None:
    """Put a marketer on insights duty: insights without a campaign marketer go to them."""
    from handlers.admin import on_insights_duty, set_insights_duty

    with admin_session() as session:
        if email is None and not off:
            member = on_insights_duty(session)
            out.print(f"{member.name} is on insights duty." if member else "Nobody is on duty.")
            return
        member = set_insights_duty(session, email=None if off else email)
    if member is None:
        out.print("Nobody is on insights duty: insights go to every marketer.")
    else:
        out.print(f"{member.name} is on insights duty.")
