"""`liaison serve` with LIAISON_LOG_FORMAT=json: every line it writes is one JSON object,
carrying the request id it happened in; no secret and no lead's details on any line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from tests.loopback import free_port
from tests.support import WEBHOOK_SECRET, eventually, signed_lead_headers

ROOT = Path(__file__).parent.parent


def request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> str:
    """The answer's X-Request-Id (any status)."""
    sent = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            return str(answer.headers["X-Request-Id"])
    except urllib.error.HTTPError as refused:
        return str(refused.headers["X-Request-Id"])


def test_every_line_of_a_serve_run_is_json_with_its_request_id(tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        LIAISON_DATABASE_URL=f"sqlite:///{tmp_path / 'j.db'}",
        LIAISON_LOG_FORMAT="json",
        LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LIAISON_TICK_SECONDS="1",
    )
    env.pop("SLACK_BOT_TOKEN", None)
    env.pop("MICROSOFT_APP_ID", None)
    server = subprocess.Popen(
        [sys.executable, "-c", "from app import main; main()", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    lead = {
        "external_id": "J-1",
        "name": "Jordan Privately",
        "email": "jordan.privately@globex.example",
        "owner_email": "nobody-known@example.com",
    }
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert request(f"{base}/healthz", headers={"X-Request-Id": "probe-1"}) == "probe-1"
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        body = json.dumps(lead).encode()
        webhook_id = request(f"{base}/api/leads", body, signed_lead_headers(body))
        forged = signed_lead_headers(body, secret="not-the-secret")
        assert request(f"{base}/api/leads", body, forged)  # refused, still given an id
        time.sleep(2.5)  # a couple of ticks, and the owner lookup, get to log
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) >= 3
    records = []
    for line in lines:
        record = json.loads(line)  # every line, or this fails naming it
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    healthz = [r for r in records if r["logger"] == "aiohttp.access" and "/healthz" in r["message"]]
    assert healthz and healthz[0]["request_id"] == "probe-1"
    webhook = [r for r in records if r.get("request_id") == webhook_id]
    assert webhook, "the webhook request's lines carry its id"
    assert not any("apscheduler" in r["logger"] for r in records)
    for secret in (WEBHOOK_SECRET, lead["email"], lead["name"]):
        assert secret not in output


async def test_the_outbox_row_a_request_owes_carries_its_request_id(tmp_path: Path) -> None:
    """From the log line of a request to the message it owed: the handoff card a webhook
    request causes is stored with that request's id (the proxy's X-Request-Id here)."""
    import aiohttp
    from sqlmodel import select

    from storage import members
    from storage.models import OutboxMessage
    from tests.support import LiveServer, make_settings

    settings = make_settings(f"sqlite:///{tmp_path / 'r.db'}")
    live = await LiveServer(settings).start()
    try:
        with live.store.session() as session:
            members.upsert_member(
                session,
                now=datetime.now(UTC),
                email="rep@example.com",
                name="Rep",
                slack_user_id="U0REP",
                role="rep",
            )
        body = json.dumps({"external_id": "R-1", "name": "Jo", "owner_email": "rep@example.com"})
        headers = {**signed_lead_headers(body.encode()), "X-Request-Id": "lead-req-7"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{live.url}/api/leads", data=body.encode(), headers=headers) as answer,
        ):
            assert answer.status == 200
            assert answer.headers["X-Request-Id"] == "lead-req-7"

        def owed() -> list[tuple[str, str | None]]:
            with live.store.session() as session:
                rows = session.exec(select(OutboxMessage)).all()
                return [(row.key, row.request_id) for row in rows]

        found = await eventually(owed)
        assert [request for key, request in found if key.startswith("handoff")] == ["lead-req-7"]
    finally:
        await live.stop()
