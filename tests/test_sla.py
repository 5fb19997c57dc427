"""SLA policies as versioned data, `/sla`, time away, working hours and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import app
from app import build_router, cli
from bot.core.business_time import Company, add_business, is_working
from bot.core.effects import Reply
from bot.core.interaction import Interaction, Kind, Where
from bot.core.settings import Settings
from storage import away as stored_away
from storage import members as stored_members
from storage import policies as stored_policies
from storage.calendars import calendar_of
from storage.db import Store
from storage.models import Member

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday
runner = CliRunner()


def say_to_bot(store: Store, member: Member, command: str, text: str = "") -> str:
    interaction = Interaction(Kind.command, command, member, Where("test"), text=text)
    (reply,) = build_router(Company("Europe/London")).dispatch(store, interaction, NOW)
    assert isinstance(reply, Reply)
    return " ".join([reply.card.title, reply.card.text, *(f.value for f in reply.card.fields)])


@pytest.fixture
def alice(sqlite_store: Store) -> Member:
    with sqlite_store.session() as s:
        return stored_members.upsert_member(
            s, now=NOW, email="alice@x.com", name="Alice", timezone="America/New_York"
        )


def test_sla_shows_both_sides_commitments(sqlite_store: Store, alice: Member) -> None:
    text = say_to_bot(sqlite_store, alice, "sla")
    assert "Service-level agreement v1" in text
    assert "first touch within 4 business hours" in text
    assert "at least 5 attempts within 10 business days" in text
    assert "40 leads per week" in text and "at least 60%" in text
    assert "within 4 business hours" in text and "reminder at 75%" in text


def test_away_pauses_the_clock_until_the_local_morning(sqlite_store: Store, alice: Member) -> None:
    assert "You are away until Wed 02 Dec 2026" in say_to_bot(
        sqlite_store, alice, "away", "until 2026-12-02"
    )
    with sqlite_store.session() as s:
        away = stored_away.current_away(s, member_id=alice.id or 0, now=NOW)
        assert away is not None
        assert away.until == datetime(2026, 12, 2, 5, 0, tzinfo=UTC)  # midnight in New York
        cal = calendar_of(s, alice, Company("Europe/London"))
    assert cal.tz == "America/New_York"
    assert not is_working(cal, datetime(2026, 11, 24, 15, tzinfo=UTC))
    # A clock started now runs again on Wed 2 Dec at 09:00 New York time.
    assert add_business(cal, NOW, 3600) == datetime(2026, 12, 2, 15, tzinfo=UTC)
    assert "Welcome back" in say_to_bot(sqlite_store, alice, "back")
    assert "not marked as away" in say_to_bot(sqlite_store, alice, "back")


@pytest.mark.parametrize(
    "text,answer",
    [
        ("", "Tell me when you are back"),
        ("until tomorrow", "Tell me when you are back"),
        ("until 2026-11-01", "is not in the future"),
        ("until 2031-01-01", "at most 365 days"),
    ],
)
def test_away_explains_bad_input(
    sqlite_store: Store, alice: Member, text: str, answer: str
) -> None:
    assert answer in say_to_bot(sqlite_store, alice, "away", text)
    with sqlite_store.session() as s:
        assert stored_away.current_away(s, member_id=alice.id or 0, now=NOW) is None


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    url = f"sqlite:///{tmp_path / 'sla.db'}"
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    app.out.width = 200
    return Store.open(url)


def test_sla_set_makes_a_new_version_and_keeps_what_it_leaves_out(
    db: Store, tmp_path: Path
) -> None:
    spec = tmp_path / "sla.yaml"
    spec.write_text(
        "note: tighter first touch\nsales:\n  first_touch_hours: 2\n"
        "marketing:\n  acceptance_rate: 65%\n  leads_per_week: 55\n"
    )
    result = runner.invoke(cli, ["sla", "set", str(spec)])
    assert result.exit_code == 0, result.output
    assert "SLA v2 is now in force" in result.output
    with db.session() as s:
        policy = stored_policies.current_policy(s)
    assert (policy.version, policy.first_touch_hours, policy.acceptance_rate) == (2, 2, 0.65)
    assert (policy.leads_per_week, policy.attempts, policy.note) == (55, 5, "tighter first touch")


@pytest.mark.parametrize(
    "content,named",
    [
        ("sales:\n  attempts: 0\n", "sales.attempts"),
        ("sales:\n  atempts: 5\n", "sales.atempts"),
        ("marketing:\n  acceptance_rate: 1.5\n", "marketing.acceptance_rate"),
        ("reminders:\n  remind_share: 1\n", "reminders.remind_share"),
    ],
)
def test_sla_set_names_what_is_wrong(db: Store, tmp_path: Path, content: str, named: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(content)
    result = runner.invoke(cli, ["sla", "set", str(spec)])
    assert result.exit_code == 2 and named in result.output
    with db.session() as s:
        assert stored_policies.current_policy(s).version == 1


def test_holidays_and_working_hours_shape_the_calendar(db: Store) -> None:
    assert (
        runner.invoke(cli, ["holidays", "add", "2026-12-25", "--name", "Christmas"]).exit_code == 0
    )
    assert "2026-12-25 Fri" in runner.invoke(cli, ["holidays", "list"]).output
    assert runner.invoke(cli, ["holidays", "add", "25/12/2026"]).exit_code == 2
    result = runner.invoke(
        cli,
        [
            "members",
            "set",
            "omar@x.com",
            "--timezone",
            "Asia/Dubai",
            "--hours",
            "08:00-16:00",
            "--workdays",
            "sun-thu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["members", "set", "omar@x.com", "--hours", "17-9"]).exit_code == 2
    assert (
        runner.invoke(cli, ["members", "set", "omar@x.com", "--workdays", "funday"]).exit_code == 2
    )
    with db.session() as s:
        omar = stored_members.member_by(s, email="omar@x.com")
        assert omar is not None
        cal = calendar_of(s, omar, Company())
    assert cal.weekdays == frozenset({6, 0, 1, 2, 3})
    assert (cal.start, cal.end) == (time(8), time(16))
    assert date(2026, 12, 25) in cal.holidays
    assert is_working(cal, datetime(2026, 11, 22, 5, tzinfo=UTC))  # Sunday 09:00 in Dubai
    assert not is_working(cal, datetime(2026, 11, 27, 5, tzinfo=UTC))  # Friday


def test_company_working_week_applies_to_members_without_their_own(sqlite_store: Store) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        LIAISON_TIMEZONE="Asia/Dubai",
        LIAISON_WORK_HOURS="08:00-16:00",
        LIAISON_WORKDAYS="sun-thu",
    )
    company = settings.company
    with sqlite_store.session() as s:
        omar = stored_members.upsert_member(s, now=NOW, email="omar@x.com", name="Omar")
        nina = stored_members.upsert_member(
            s,
            now=NOW,
            email="nina@x.com",
            name="Nina",
            timezone="Europe/Paris",
            work_start="10:00",
            work_end="18:00",
            workdays="0,1,2,3,4",
        )
        omar_cal, nina_cal = calendar_of(s, omar, company), calendar_of(s, nina, company)
    # Omar follows the company: Sunday 08:00 Dubai (04:00 UTC) is a working morning.
    sunday = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    assert is_working(omar_cal, sunday)
    assert not is_working(omar_cal, datetime(2026, 11, 27, 6, tzinfo=UTC))  # a Friday
    assert add_business(omar_cal, sunday, 8 * 3600) == datetime(2026, 11, 29, 12, tzinfo=UTC)
    # Nina's own hours and zone win over the company's.
    assert not is_working(nina_cal, sunday)
    assert add_business(nina_cal, sunday, 3600) == datetime(2026, 11, 30, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "name,value,complaint",
    [
        ("LIAISON_WORK_HOURS", "17:00-09:00", "must end after they start"),
        ("LIAISON_WORK_HOURS", "nine to five", "HH:MM-HH:MM"),
        ("LIAISON_WORKDAYS", "weekdays", "day names like mon-fri"),
        ("LIAISON_TIMEZONE", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_a_bad_company_setting_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, complaint: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIAISON_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["holidays", "list"])
    assert result.exit_code == 2
    assert name in result.output and complaint in result.output
    assert "Traceback" not in result.output
