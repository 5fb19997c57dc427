"""`liaison insights duty`: who gets the insights that have no campaign marketer."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import app
from app import cli
from storage import insights
from storage.db import Store

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    app.out.width = 200
    return url


def on_duty(url: str) -> int | None:
    store = Store.open(url)
    with store.session() as s:
        return insights.duty_member_id(s)


def test_insights_duty_from_the_command_line(db: str) -> None:
    for email, role in (("carol@x.com", "marketer"), ("alice@x.com", "rep")):
        result = runner.invoke(cli, ["members", "set", email, "--role", role])
        assert result.exit_code == 0, result.output
    nobody = runner.invoke(cli, ["insights", "duty"])
    assert nobody.exit_code == 0 and "Nobody is on duty" in nobody.output

    rep = runner.invoke(cli, ["insights", "duty", "alice@x.com"])
    assert rep.exit_code == 2 and "only marketers and admins take insights duty" in rep.output
    unknown = runner.invoke(cli, ["insights", "duty", "zed@x.com"])
    assert unknown.exit_code == 2 and "No member with email zed@x.com" in unknown.output
    assert on_duty(db) is None

    carol = runner.invoke(cli, ["insights", "duty", "CAROL@x.com"])
    assert carol.exit_code == 0 and "is on insights duty" in carol.output
    assert on_duty(db) is not None
    shown = runner.invoke(cli, ["insights", "duty"])
    assert "carol is on insights duty" in shown.output.lower()
    off = runner.invoke(cli, ["insights", "duty", "--off"])
    assert off.exit_code == 0 and on_duty(db) is None
