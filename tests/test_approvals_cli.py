"""`liaison approvers set/list`, and the bootstrap `set` commands recorded in the approvals
history, through typer's runner on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

import app
from app import build_router, cli
from bot.core.effects import Reply
from bot.core.interaction import Interaction, Kind, Where
from storage import approvals
from storage import members as stored_members
from storage.db import Store
from storage.models import ApprovalRequest, ApprovalSignoff

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    app.out.width = 200
    for email, role in (
        ("bob@x.com", "manager"),
        ("sam@x.com", "leader"),
        ("dave@x.com", "manager"),
        ("alice@x.com", "rep"),
    ):
        assert runner.invoke(cli, ["members", "set", email, "--role", role]).exit_code == 0
    return url


def sides(url: str) -> dict[str, list[str]]:
    store = Store.open(url)
    with store.session() as s:
        return approvals.approver_names(s)


def test_approvers_set_replaces_each_given_side(db: str) -> None:
    result = runner.invoke(
        cli, ["approvers", "set", "--sales", "bob@x.com, SAM@x.com", "--marketing", "dave@x.com"]
    )
    assert result.exit_code == 0, result.output
    assert "Sales approvers: bob, sam" in result.output
    assert "Marketing approvers: dave" in result.output
    assert sides(db) == {"sales": ["bob", "sam"], "marketing": ["dave"]}
    # Only the side given is replaced.
    result = runner.invoke(cli, ["approvers", "set", "--sales", "alice@x.com"])
    assert result.exit_code == 0, result.output
    assert sides(db) == {"sales": ["alice"], "marketing": ["dave"]}
    listing = runner.invoke(cli, ["approvers", "list"])
    assert "sales" in listing.output and "alice@x.com" in listing.output
    assert "marketing" in listing.output and "dave@x.com" in listing.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sales", "nobody@x.com,bob@x.com"], "No member with the email nobody@x.com"),
        (["--sales", "bob", "--marketing", "dave@x.com"], "Not an email address: bob"),
        (["--marketing", " , "], "--marketing needs at least one email"),
        ([], "Name the approvers of one side or both"),
        (["--sales", "bob@x.com", "--marketing", "bob@x.com"], "would sign for both sides"),
    ],
)
def test_approvers_set_refuses_bad_emails_and_changes_nothing(
    db: str, args: list[str], message: str
) -> None:
    runner.invoke(cli, ["approvers", "set", "--sales", "sam@x.com", "--marketing", "dave@x.com"])
    result = runner.invoke(cli, ["approvers", "set", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert sides(db) == {"sales": ["sam"], "marketing": ["dave"]}


def test_approvers_list_when_none_are_named(db: str) -> None:
    result = runner.invoke(cli, ["approvers", "list"])
    assert result.exit_code == 0 and "No approvers named yet" in result.output


def history(url: str, request_id: int) -> str:
    store = Store.open(url)
    with store.session() as s:
        viewer = stored_members.member_by(s, email="alice@x.com")
    assert viewer is not None
    interaction = Interaction(
        Kind.command, "approvals", viewer, Where("test"), text=str(request_id)
    )
    (reply,) = build_router().dispatch(store, interaction, datetime.now(UTC))
    assert isinstance(reply, Reply)
    card = reply.card
    return "\n".join([card.title, card.text, *(f"{f.label}: {f.value}" for f in card.fields)])


def test_the_set_commands_are_recorded_as_bootstrap(db: str, tmp_path: Path) -> None:
    spec = tmp_path / "def.yaml"
    spec.write_text(
        "note: tighter\ncriteria:\n  - key: budget\n    text: Budget approved\n"
        "  - key: icp\n    text: Ideal customer profile\n"
    )
    result = runner.invoke(cli, ["leaddef", "set", str(spec)])
    assert result.exit_code == 0, result.output
    assert "v2 is now in force (2 criteria), set without sign-off (recorded as approval #1)" in (
        result.output
    )
    sla = tmp_path / "sla.yaml"
    sla.write_text(
        "note: faster\nsales:\n  first_touch_hours: 3\nmarketing:\n  acceptance_rate: 65%\n"
    )
    result = runner.invoke(cli, ["sla", "set", str(sla)])
    assert result.exit_code == 0, result.output
    assert "SLA v2 is now in force, set without sign-off (recorded as approval #2)" in result.output

    store = Store.open(db)
    with store.session() as s:
        requests = s.exec(select(ApprovalRequest).order_by(col(ApprovalRequest.id))).all()
        assert [(r.subject, r.status, r.proposer_label, r.version) for r in requests] == [
            ("leaddef", "bootstrap", "admin (CLI)", 2),
            ("sla", "bootstrap", "admin (CLI)", 2),
        ]
        assert all(r.proposed_by is None and r.decided_at is not None for r in requests)
        assert s.exec(select(ApprovalSignoff)).all() == []
        assert requests[1].payload["changed"] == [
            ["first_touch_hours", 4.0, 3.0],
            ["acceptance_rate", 0.6, 0.65],
        ]
    shown = history(db, 1)
    assert "Approval #1: lead definition · v2, set without sign-off" in shown
    assert "Set by admin (CLI) on" in shown and "without sign-off" in shown
    assert "Added: icp: Ideal customer profile" in shown and "Retired: timing" in shown
    assert "Edited: budget: Budget confirmed or likely → Budget approved" in shown
    assert "First touch (business hours after handoff): 4 → 3" in history(db, 2)


def test_a_bootstrap_mentions_what_still_waits(db: str, tmp_path: Path) -> None:
    runner.invoke(cli, ["approvers", "set", "--sales", "sam@x.com", "--marketing", "dave@x.com"])
    store = Store.open(db)
    with store.session() as s:
        bob = stored_members.member_by(s, email="bob@x.com")
    assert bob is not None
    from tests.test_approvals import propose_leaddef

    propose_leaddef(store, bob)
    spec = tmp_path / "def.yaml"
    spec.write_text("criteria:\n  - key: budget\n    text: Budget approved\n")
    result = runner.invoke(cli, ["leaddef", "set", str(spec)])
    assert result.exit_code == 0
    assert "Still waiting for sign-off: approval #1" in result.output
    result = runner.invoke(cli, ["approvers", "set", "--sales", "alice@x.com"])
    assert "Pending approval #1 keeps the approvers it was sent to" in result.output
