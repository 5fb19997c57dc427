"""Setup mistakes an operator makes, as a real `liaison` process meets them: each is one line
naming the problem and the fix, with a non-zero exit; the traceback only with --debug."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.db import Store
from storage.models import OutboxMessage
from tests.conftest import PG_ADMIN_URL
from tests.loopback import free_port

ROOT = Path(__file__).parent.parent
LIAISON = [sys.executable, "-c", "from app import main; main()"]
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
HEAVY = ("sqlalchemy", "sqlmodel", "aiohttp", "slack_bolt", "slack_sdk", "microsoft_agents")


def liaison(
    *args: str, url: str, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LIAISON_DATABASE_URL=url, COLUMNS="80")
    for name in ("SLACK_BOT_TOKEN", "LIAISON_WEBHOOK_SECRET", "MICROSOFT_APP_ID"):
        env.pop(name, None)
    return subprocess.run(
        [*LIAISON, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The process's only line of output (stdout and stderr together)."""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_a_database_that_does_not_exist_says_how_to_create_it(pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/no_such_db"
    done = liaison("members", "list", url=missing)
    assert done.returncode == 1
    line = one_line(done)
    assert 'database "no_such_db" does not exist' in line and "createdb" in line


def test_a_database_port_nobody_listens_on_says_start_it(tmp_path: Path) -> None:
    closed = f"{PG_ADMIN_URL.rsplit('@', 1)[0]}@127.0.0.1:{free_port()}/test"
    done = liaison("members", "list", url=closed, cwd=tmp_path)
    assert done.returncode == 1
    line = one_line(done)
    assert "database unreachable" in line and "start the database" in line


def test_a_database_kind_liaison_does_not_run_on_is_named(tmp_path: Path) -> None:
    done = liaison("members", "list", url="mysql://root@localhost/crm", cwd=tmp_path)
    assert done.returncode == 2
    line = one_line(done)
    assert "LIAISON_DATABASE_URL" in line and "'mysql'" in line and "PostgreSQL" in line


def test_a_plain_postgresql_url_uses_the_driver_liaison_ships(pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    done = liaison("members", "list", "--format", "json", url=plain)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = liaison("serve", "--port", str(port), url=f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert f"Port {port} on 127.0.0.1 is in use" in line and "--port" in line
    assert "Traceback" not in done.stdout + done.stderr


def test_serve_on_a_port_that_cannot_exist_is_refused_before_anything(tmp_path: Path) -> None:
    done = liaison("serve", "--port", "99999", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert "Invalid value for '--port'" in done.stderr and "65535" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "x.db").exists()  # refused before the database was touched


def test_retrying_an_unknown_or_unfailed_message_names_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    store = Store.open(url)
    with store.session() as session:
        sent = OutboxMessage(
            key="k-sent", target="slack:C1", status="sent", not_before=NOW, created_at=NOW
        )
        session.add(sent)
        session.flush()
        sent_id = sent.id
    store.engine.dispose()
    unknown = liaison("outbox", "retry", "99999", url=url, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "No message 99999 in the outbox" in one_line(unknown)
    done = liaison("outbox", "retry", str(sent_id), url=url, cwd=tmp_path)
    assert done.returncode == 1
    assert f"{sent_id} is sent: only failed messages go back in line." in one_line(done)


def test_an_unforeseen_failure_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    liaison("db", "upgrade", url=url, cwd=tmp_path)
    (tmp_path / "u.db").write_bytes(b"this is not a database" * 100)  # damaged since
    done = liaison("members", "list", url=url, cwd=tmp_path)
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith("liaison: ") and "--debug" in line
    debug = liaison("--debug", "members", "list", url=url, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_help_imports_nothing_heavy() -> None:
    """`liaison --help` stays fast because the app's import pulls no database, web or chat
    library (bench/cli_help.py measures the time itself)."""
    probe = (
        "import sys, app\n"
        "sys.argv = ['liaison', '--help']\n"
        "try:\n    app.main()\n"
        "finally:\n"
        f"    print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and "serve" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_piped_tables_are_never_cut_and_come_as_json_or_csv(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    email = "bartholomew.featherstonehaugh-cholmondeley@enterprise-accounts.example.com"
    assert (
        liaison("members", "set", "boss@example.com", "--name", "Dana Boss", url=url).returncode
        == 0
    )
    added = liaison(
        "members", "set", email, "--name", "Bartholomew Featherstonehaugh",
        "--role", "rep", "--manager", "boss@example.com", "--timezone", "America/Los_Angeles",
        url=url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    table = liaison("members", "list", url=url)  # piped, COLUMNS=80
    assert email in table.stdout and "Bartholomew Featherstonehaugh" in table.stdout
    assert "America/Los_Angeles" in table.stdout and "…" not in table.stdout
    rows = json.loads(liaison("members", "list", "--format", "json", url=url).stdout)
    bart = next(r for r in rows if r["email"] == email)
    assert bart["manager"] == "Dana Boss" and bart["role"] == "rep"
    parsed = list(
        csv.DictReader(io.StringIO(liaison("members", "list", "--format", "csv", url=url).stdout))
    )
    assert {r["email"] for r in parsed} == {email, "boss@example.com"}
    wrong = liaison("members", "list", "--format", "xml", url=url)
    assert wrong.returncode == 2 and "--format is one of table, json, csv" in one_line(wrong)


def test_the_outbox_names_the_member_a_message_is_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    assert (
        liaison("members", "set", "ana@example.com", "--name", "Ana Lima", url=url).returncode == 0
    )
    store = Store.open(url)
    with store.session() as session:
        from storage import members as stored_members

        ana = stored_members.member_by(session, email="ana@example.com")
        assert ana is not None
        session.add(
            OutboxMessage(
                key="dm-1", member_id=ana.id, status="failed", not_before=NOW, created_at=NOW
            )
        )
    store.engine.dispose()
    rows = json.loads(liaison("outbox", "--format", "json", url=url).stdout)
    assert [(r["key"], r["to"], r["status"]) for r in rows] == [("dm-1", "Ana Lima", "failed")]


@pytest.mark.parametrize("command", [["members", "list"], ["db", "upgrade"]])
def test_a_command_leaves_no_sqlite_side_files(tmp_path: Path, command: list[str]) -> None:
    done = liaison(*command, url=f"sqlite:///{tmp_path / 'w.db'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "w.db").exists()
    assert not (tmp_path / "w.db-wal").exists() and not (tmp_path / "w.db-shm").exists()


def test_in_the_console_log_lines_go_to_a_file_not_into_the_chat(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import logging

    from bot.cli.run import quiet_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logging.basicConfig(force=True)  # as `liaison` starts: a handler on stderr
    try:
        log = tmp_path / "liaison-console.log"
        assert quiet_logging(log) == 0 and not log.exists()  # made at the first line only
        logging.getLogger("digests.weekly").warning("the 2026-W48 digest is due but no …")
        logging.getLogger("digests.scheduler").info("a pass, not worth a line")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert "WARNING digests.weekly: the 2026-W48 digest is due" in log.read_text()
    assert "a pass" not in log.read_text()
