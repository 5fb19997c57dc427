"""The `liaison` command line, through typer's runner (and one real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

import app
from app import cli
from storage.db import Store
from storage.models import Lead, Member

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    app.out.width = 200  # a wide terminal, so tables are not cut
    for name in ("SLACK_BOT_TOKEN", "LIAISON_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return url


def count(url: str, model: type) -> int:
    store = Store.open(url)
    with store.session() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_import_leads_keeps_good_rows_and_names_bad_ones(db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "leads.csv"
    csv_file.write_text(
        "external_id,name,company,email,owner_email,campaign,region\n"
        "C1,Jordan Patel,Globex,jordan@globex.example,,Webinar,EMEA\n"
        "C2,,Initech,,,Webinar,US\n"
        "C3,Priya Rossi,Hooli,not-an-email,,Webinar,US\n"
        "C4,Tom Ito,Acme,tom@acme.example,,,APAC\n"
    )
    result = runner.invoke(cli, ["import-leads", str(csv_file)])
    assert result.exit_code == 1, result.output
    assert "row 3" in result.output and "name" in result.output
    assert "row 4" in result.output and "email" in result.output
    assert "2 imported, 0 already known, 2 rows refused" in result.output
    assert count(db, Lead) == 2
    again = runner.invoke(cli, ["import-leads", str(csv_file)])
    assert "0 imported, 2 already known" in again.output
    assert count(db, Lead) == 2
    store = Store.open(db)
    with store.session() as s:
        lead = s.exec(select(Lead).where(Lead.external_id == "C1")).one()
        assert lead.attributes == {"region": "EMEA"} and lead.state == "unassigned"


def test_import_of_a_missing_file_is_a_clear_error(db: str) -> None:
    result = runner.invoke(cli, ["import-leads", "nope.csv"])
    assert result.exit_code == 2 and "Cannot read nope.csv" in result.output


def test_leaddef_set_creates_a_version(db: str, tmp_path: Path) -> None:
    spec = tmp_path / "def.yaml"
    spec.write_text(
        "note: tighter\ncriteria:\n  - key: budget\n    text: Budget approved\n"
        "  - key: icp\n    text: Ideal customer profile\n"
    )
    result = runner.invoke(cli, ["leaddef", "set", str(spec)])
    assert result.exit_code == 0 and "v2 is now in force (2 criteria)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("criteria:\n  - key: a\n  - key: a\n    text: twice\n")
    result = runner.invoke(cli, ["leaddef", "set", str(bad)])
    assert result.exit_code == 2 and "not a lead definition" in result.output


def test_members_set_and_list(db: str) -> None:
    assert (
        runner.invoke(
            cli, ["members", "set", "dave@x.com", "--role", "manager", "--name", "Dave D"]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        cli,
        [
            "members",
            "set",
            "alice@x.com",
            "--role",
            "rep",
            "--manager",
            "dave@x.com",
            "--timezone",
            "Europe/Berlin",
        ],
    )
    assert result.exit_code == 0 and "manager Dave D" in result.output
    listing = runner.invoke(cli, ["members", "list"])
    assert "alice@x.com" in listing.output and "Europe/Berlin" in listing.output
    wrong = runner.invoke(cli, ["members", "set", "eve@x.com", "--role", "boss"])
    assert wrong.exit_code == 2 and "Unknown role" in wrong.output
    assert count(db, Member) == 2


def test_channels_set_validates(db: str) -> None:
    assert runner.invoke(cli, ["channels", "set", "admin", "slack:C0123"]).exit_code == 0
    assert runner.invoke(cli, ["channels", "set", "lunch", "slack:C0123"]).exit_code == 2
    assert runner.invoke(cli, ["channels", "set", "admin", "C0123"]).exit_code == 2


def test_demo_is_reproducible_and_idempotent(db: str) -> None:
    first = runner.invoke(cli, ["demo", "--leads", "12"])
    assert first.exit_code == 0 and "12 new leads" in first.output
    again = runner.invoke(cli, ["demo", "--leads", "12"])
    assert "0 new leads" in again.output
    assert count(db, Lead) == 12 and count(db, Member) == 8


def test_demo_refuses_a_negative_number_of_leads(db: str) -> None:
    result = runner.invoke(cli, ["demo", "--leads", "-1"])
    assert result.exit_code == 2 and count(db, Lead) == 0


def test_console_runs_as_a_real_process(tmp_path: Path) -> None:
    env = dict(os.environ, LIAISON_DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}")
    liaison = [sys.executable, "-c", "from app import main; main()"]
    subprocess.run(
        [*liaison, "demo", "--leads", "6"],
        env=env,
        check=True,
        capture_output=True,
        cwd=Path(__file__).parent.parent,
    )
    done = subprocess.run(
        [*liaison, "console", "--as", "carol"],
        env=env,
        capture_output=True,
        text=True,
        input="/leaddef\n/as nobody\n/quit\n",
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert "You are now Carol Chen (marketer)" in done.stdout
    assert "Lead definition v1" in done.stdout
    assert "No member called nobody" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(tmp_path.glob("c.db-*"))  # no -wal or -shm left behind


def test_socket_mode_without_tokens_says_what_is_missing(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    result = runner.invoke(cli, ["socket"])
    assert result.exit_code == 2 and "SLACK_APP_TOKEN" in result.output


def test_serve_runs_as_a_real_process(tmp_path: Path) -> None:
    import json
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, LIAISON_DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}")
    env.pop("SLACK_BOT_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-c", "from app import main; main()", "serve", "--port", str(port)],
        env=env,
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert json.loads(r.read()) == {"status": "ok", "database": "ok"}
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Traceback" not in output
