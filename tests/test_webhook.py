"""POST /api/leads over real HTTP: signatures, validation, idempotency, health."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import LiveServer, make_settings, signed_lead_headers


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    live = await LiveServer(make_settings(f"sqlite:///{tmp_path / 'l.db'}")).start()
    yield live
    await live.stop()


async def post(server: LiveServer, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/leads", data=body, headers=headers) as response,
    ):
        data = await response.json()
    await server.settle()
    return response.status, data


async def test_one_lead_then_the_same_again(server: LiveServer) -> None:
    body = json.dumps({"external_id": "A-1", "name": "Jordan", "owner_email": "x@y.com"}).encode()
    status, data = await post(server, body, signed_lead_headers(body))
    assert status == 200 and data["leads"][0]["status"] == "created"
    first_id = data["leads"][0]["id"]
    status, data = await post(server, body, signed_lead_headers(body))
    assert status == 200 and data["leads"] == [
        {
            "id": first_id,
            "external_id": "A-1",
            "source": "",
            "status": "duplicate",
            "owner_email": "x@y.com",
        }
    ]


async def test_a_list_of_leads(server: LiveServer) -> None:
    body = json.dumps([{"external_id": str(i), "name": f"N{i}"} for i in range(3)]).encode()
    status, data = await post(server, body, signed_lead_headers(body))
    assert status == 200 and [lead["status"] for lead in data["leads"]] == ["created"] * 3


async def test_invalid_fields_are_named_and_nothing_is_stored(server: LiveServer) -> None:
    leads = [
        {"external_id": "ok", "name": "Fine"},
        {"external_id": "", "name": "Bad id", "email": "not-an-email"},
        "not an object",
    ]
    body = json.dumps(leads).encode()
    status, data = await post(server, body, signed_lead_headers(body))
    assert status == 422
    named = {(d["index"], d["field"]) for d in data["details"]}
    assert {(1, "external_id"), (1, "email"), (2, "")} <= named
    body = json.dumps(leads[0]).encode()
    status, data = await post(server, body, signed_lead_headers(body))
    assert data["leads"][0]["status"] == "created"  # the refused batch stored nothing


@pytest.mark.parametrize("case", ["missing", "wrong", "stale", "other_secret"])
async def test_bad_signatures_are_refused(server: LiveServer, case: str) -> None:
    body = b'{"external_id": "1", "name": "n"}'
    headers = signed_lead_headers(body)
    if case == "missing":
        del headers["X-Liaison-Signature"]
    elif case == "wrong":
        headers["X-Liaison-Signature"] = "sha256=" + "ab" * 32
    elif case == "stale":
        headers = signed_lead_headers(body, timestamp=int(time.time()) - 301)
    else:
        headers = signed_lead_headers(body, secret="guess")
    status, data = await post(server, body, headers)
    assert status == 401 and data["error"]


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"\xff\xfe", b"null"])
async def test_malformed_bodies_get_400(server: LiveServer, body: bytes) -> None:
    status, data = await post(server, body, signed_lead_headers(body))
    assert status in (400, 422) and data["error"]
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok"}


async def test_without_a_secret_the_endpoint_is_off(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'l.db'}", LIAISON_WEBHOOK_SECRET="")
    live = await LiveServer(settings).start()
    try:
        body = b"{}"
        status, data = await post(live, body, signed_lead_headers(body))
        assert status == 503 and "LIAISON_WEBHOOK_SECRET" in data["error"]
    finally:
        await live.stop()


async def test_health_reports_an_unreachable_database(tmp_path: Path) -> None:
    live = await LiveServer(make_settings(f"sqlite:///{tmp_path / 'l.db'}")).start()
    try:
        live.store.engine.dispose()
        (tmp_path / "l.db").unlink()
        (tmp_path / "l.db").mkdir()  # a directory where the file was: SQLite cannot open it
        async with aiohttp.ClientSession() as http, http.get(f"{live.url}/healthz") as response:
            assert response.status == 503
            assert (await response.json())["database"] == "unreachable"
    finally:
        await live.stop()
