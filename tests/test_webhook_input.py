"""POST /api/leads with bad input, over real HTTP: always a 4xx naming the problem, never
a 500, and a refused request stores nothing. Typed attributes are kept as JSON.

Runs on SQLite and PostgreSQL (PostgreSQL refuses NUL bytes that SQLite would store)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from bot.core.jsonlimits import JsonRefused, loads_bounded
from bot.web.webhook import MAX_BODY_BYTES
from handlers.cards import lead_card
from storage.db import Store
from storage.models import Lead, LeadEvent, OutboxMessage
from tests.support import LiveServer, make_settings, signed_lead_headers


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[LiveServer]:
    live = await LiveServer(make_settings(db_url)).start()
    yield live
    await live.stop()


async def post(
    server: LiveServer, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/leads", data=raw, headers=headers or signed_lead_headers(raw)
        ) as response,
    ):
        text = await response.text()
    return response.status, json.loads(text) if text.startswith("{") else text


def nothing_stored(server: LiveServer) -> bool:
    with server.store.session() as session:
        counts = [
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Lead, LeadEvent, OutboxMessage)
        ]
    return counts == [0, 0, 0]


def lead(**fields: Any) -> dict[str, Any]:
    return {"external_id": "X-1", "name": "Jordan Lee", **fields}


# ---------------------------------------------------------------- headers and bodies


@pytest.mark.parametrize("timestamp", ["9" * 400, "1" * 13, "²", "-5", " 1700000000", "1e9"])
async def test_odd_timestamps_are_401(server: LiveServer, timestamp: str) -> None:
    body = json.dumps(lead()).encode()
    headers = {**signed_lead_headers(body), "X-Liaison-Timestamp": timestamp}
    status, data = await post(server, body, headers)
    assert status == 401 and "X-Liaison-Timestamp" in data["error"]


async def test_deep_json_is_400_naming_the_depth(server: LiveServer) -> None:
    for depth in (100, 1_000, 100_000):
        body = b"[" * depth + b"]" * depth
        status, data = await post(server, body)
        assert status == 400 and "nested" in data["error"], (depth, data)
    nested: Any = 1
    for _ in range(25):  # 25 levels inside one lead: deeper than any lead needs
        nested = [nested]
    status, data = await post(server, lead(extra=nested))
    assert status == 400 and "nested" in data["error"]
    assert nothing_stored(server)


async def test_bodies_over_the_limit_are_413_even_without_a_length(server: LiveServer) -> None:
    padding = "x" * (MAX_BODY_BYTES + 10)
    body = json.dumps(lead(notes=padding)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/leads", data=chunks(), headers=signed_lead_headers(body)
        ) as response,
    ):
        assert response.status == 413
        assert str(MAX_BODY_BYTES) in (await response.json())["error"]
    assert nothing_stored(server)


@pytest.mark.parametrize(
    "body",
    [b"1" * 5000, b'{"external_id": "1", "name": "n", "score": 1e400}', b"NaN", b'"\\ud800"'],
)
async def test_numbers_out_of_range_and_bad_text_are_4xx(server: LiveServer, body: bytes) -> None:
    status, data = await post(server, body)
    assert status in (400, 422) and data["error"]
    assert nothing_stored(server)


async def test_too_many_leads_in_one_body_is_413(server: LiveServer) -> None:
    status, data = await post(server, [lead(external_id=str(n)) for n in range(1001)])
    assert status == 413 and "1000" in data["error"]
    assert nothing_stored(server)


# ---------------------------------------------------------------- fields


@pytest.mark.parametrize("field", ["external_id", "name", "company", "title", "campaign", "source"])
async def test_a_nul_byte_is_422_naming_the_field(server: LiveServer, field: str) -> None:
    status, data = await post(server, [lead(external_id="ok"), lead(**{field: "ab\x00cd"})])
    assert status == 422, data
    assert {(d["index"], d["field"]) for d in data["details"]} == {(1, field)}
    assert "NUL" in data["details"][0]["message"]
    assert nothing_stored(server)


@pytest.mark.parametrize(
    "attributes, named",
    [
        ({"notes": "a\x00b"}, "notes"),
        ({"deep": {"x": ["ok", "a\x00b"]}}, "deep"),
        ({"bad\x00key": "v"}, "bad\x00key"),
        ({"lone": "\ud800"}, "lone"),
    ],
)
async def test_bad_text_in_attributes_is_422_naming_it(
    server: LiveServer, attributes: dict[str, Any], named: str
) -> None:
    status, data = await post(server, lead(**attributes))
    assert status == 422 and [d["field"] for d in data["details"]] == [named], data
    assert nothing_stored(server)


async def test_a_lone_surrogate_in_a_field_is_422(server: LiveServer) -> None:
    status, data = await post(server, lead(company="\ud800"))
    assert status == 422 and data["details"][0]["field"] == "company"
    assert nothing_stored(server)


@pytest.mark.parametrize(
    "created_at",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "1999-12-31T23:59:59Z",
        "FUTURE",
    ],
)
async def test_created_at_out_of_range_is_422(server: LiveServer, created_at: str) -> None:
    if created_at == "FUTURE":
        created_at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    status, data = await post(server, lead(created_at=created_at))
    assert status == 422, data
    assert [d["field"] for d in data["details"]] == ["created_at"]
    assert nothing_stored(server)


async def test_created_at_in_range_is_kept(server: LiveServer) -> None:
    tomorrow = datetime.now(UTC) + timedelta(hours=20)
    for n, moment in enumerate(("2000-01-01T00:00:00+00:00", tomorrow.isoformat())):
        status, data = await post(server, lead(external_id=f"T{n}", created_at=moment))
        assert status == 200, data


# ---------------------------------------------------------------- typed attributes


async def test_attributes_keep_their_json_types(server: LiveServer) -> None:
    extra = {
        "budget_confirmed": False,
        "seats": 40,
        "score": 0.75,
        "meta": {"a": True, "tags": ["x", "y"]},
        "fax": None,
        "region": "EMEA",
    }
    status, data = await post(server, lead(**extra))
    assert status == 200, data
    with server.store.session() as session:
        stored = session.exec(select(Lead)).one()
        assert stored.attributes == extra
        card = lead_card(session, stored)
    shown = {field.label: field.value for field in card.fields}
    assert shown["budget_confirmed"] == "no"
    assert shown["seats"] == "40" and shown["score"] == "0.75" and shown["region"] == "EMEA"
    assert shown["meta"] == '{"a":true,"tags":["x","y"]}'
    assert "fax" not in shown


@pytest.mark.parametrize(
    "extra, named",
    [
        ({f"k{n}": n for n in range(51)}, "attributes"),
        ({"k" * 65: 1}, "k" * 65),
        ({"notes": "x" * 20_000}, "attributes"),
    ],
)
async def test_attributes_over_the_limits_are_422(
    server: LiveServer, extra: dict[str, Any], named: str
) -> None:
    status, data = await post(server, lead(**extra))
    assert status == 422 and [d["field"] for d in data["details"]] == [named], data
    assert nothing_stored(server)


# ---------------------------------------------------------------- the helper others reuse


def test_loads_bounded() -> None:
    assert loads_bounded(b'{"a": [1, {"b": 2}]}', max_depth=3) == {"a": [1, {"b": 2}]}
    for body in (b'{"a": [1, {"b": [2]}]}', b"[" * 5000 + b"]" * 5000):
        with pytest.raises(JsonRefused, match="nested deeper than 3"):
            loads_bounded(body, max_depth=3)
    for body in (b"{", b"\xff", b"1" * 5000, b"1e999", b"[NaN]", b"-Infinity"):
        with pytest.raises(JsonRefused):
            loads_bounded(body)


# ---------------------------------------------------------------- property test

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0, max_codepoint=0x10FFFF))
    | st.sampled_from(["\x00", "a\x00", "\ud800x", "9999-12-31T23:59:59-14:00", "x@y.com"])
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "external_id",
    "name",
    "company",
    "email",
    "title",
    "campaign",
    "source",
    "owner_email",
    "created_at",
]
LEAD = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=70), JSON_VALUE, max_size=8)
RAW = st.sampled_from(
    [b"[" * 3000 + b"]" * 3000, b"1" * 6000, b"\x00", b'{"a": 1e999}', b"[]", b"{}"]
)
BODY = (
    st.builds(lambda leads: json.dumps(leads).encode(), st.lists(LEAD, min_size=1, max_size=3))
    | st.builds(lambda one: json.dumps(one).encode(), LEAD | JSON_VALUE)
    | RAW
)


@pytest.fixture
def one_loop_server(db_url: str) -> Iterator[tuple[LiveServer, Any]]:
    """A live server on an event loop the synchronous hypothesis test drives itself."""
    import asyncio

    loop = asyncio.new_event_loop()
    live = loop.run_until_complete(LiveServer(make_settings(db_url)).start())
    yield live, loop
    loop.run_until_complete(live.stop())
    loop.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODY)
def test_random_signed_bodies_never_get_a_5xx(
    one_loop_server: tuple[LiveServer, Any], body: bytes
) -> None:
    live, loop = one_loop_server
    before = count_rows(live)
    status, data = loop.run_until_complete(post(live, body))
    assert status < 500, (status, data)
    if status != 200:
        assert count_rows(live) == before, "a refused request stored something"
        assert data["error"]
    else:
        assert all(math.isfinite(x["id"]) for x in data["leads"])


def count_rows(live: LiveServer) -> list[int]:
    with live.store.session() as session:
        return [
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Lead, LeadEvent, OutboxMessage)
        ]


# ---------------------------------------------------------------- the CSV import


def test_csv_import_refuses_the_same_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`liaison import-leads` applies the webhook's checks: the bad rows are named, the
    good ones stored, CSV attributes kept as the text they are."""
    from typer.testing import CliRunner

    import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    for name in ("SLACK_BOT_TOKEN", "LIAISON_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    app.out.width = 200
    csv_file = tmp_path / "leads.csv"
    csv_file.write_text(
        "external_id,name,created_at,notes\n"
        "R1,Jordan Patel,2026-01-05T10:00:00Z,false\n"
        "R2,Priya Rossi,9999-12-31T23:59:59-14:00,\n"
        f"R3,Tom Ito,,{'x' * 20_000}\n"
    )
    result = CliRunner().invoke(app.cli, ["import-leads", str(csv_file)])
    assert result.exit_code == 1, result.output
    assert "row 3" in result.output and "created_at" in result.output
    assert "row 4" in result.output and "attributes" in result.output
    assert "1 imported, 0 already known, 2 rows refused" in result.output
    store = Store.open(url)
    try:
        with store.session() as session:
            (stored,) = session.exec(select(Lead)).all()
    finally:
        store.engine.dispose()
    assert stored.external_id == "R1" and stored.attributes == {"notes": "false"}
