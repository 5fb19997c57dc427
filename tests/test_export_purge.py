"""`liaison export` and `liaison purge` on a demo company, on SQLite and PostgreSQL: the
audit trail comes out whole and in time order; a purge removes leads' personal data and
leaves every figure of the weekly digest as it was."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner, Result

import app
from digests.digest import Week, build
from storage.db import Store
from storage.demo.company import create_demo
from storage.models import Lead, LeadEvent, OutboxMessage

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday: last week is complete
CUTOFF = datetime(2026, 11, 2, tzinfo=UTC)  # `purge --before 2026-11-02`
KINDS = {"lead_event", "sla_clock", "approval", "feedback_request", "feedback_answer"}


def liaison(store: Store, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("LIAISON_DATABASE_URL", store.engine.url.render_as_string(False))
    return CliRunner().invoke(app.cli, list(args))


@pytest.fixture
def company(any_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Store:
    with any_store.session() as session:
        create_demo(session, leads=120, seed=3, now=NOW)
    return any_store


def test_the_export_holds_the_whole_trail_in_time_order(
    company: Store, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    since = (NOW - timedelta(days=200)).date().isoformat()
    result = liaison(company, monkeypatch, "export", "--since", since)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["type"] for r in records} == KINDS
    times = [r["at"] for r in records]
    assert times == sorted(times) and min(times) >= since
    with company.session() as session:
        events = session.exec(
            select(LeadEvent).where(
                LeadEvent.at >= datetime.fromisoformat(since).replace(tzinfo=UTC)
            )
        ).all()
    exported = {r["id"] for r in records if r["type"] == "lead_event"}
    assert exported == {e.id for e in events}
    rejected = [r for r in records if r["type"] == "lead_event" and r["kind"] == "not_a_fit"]
    assert rejected and all(r["data"]["criteria"] and r["data"]["criteria_text"] for r in rejected)
    approvals = [r for r in records if r["type"] == "approval"]
    assert any(s["decision"] for r in approvals for s in r["signoffs"])

    target = tmp_path_factory.mktemp("export") / "trail.csv"
    as_csv = liaison(
        company, monkeypatch, "export", "--since", since, "--format", "csv", "-o", str(target)
    )
    assert as_csv.exit_code == 0, as_csv.output
    assert f"{len(records)} records written to {target}" in as_csv.stdout
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [(r["type"], r["at"], r["id"]) for r in rows] == [
        (r["type"], r["at"], str(r["id"])) for r in records
    ]
    assert json.loads(rows[0]["detail"]) is not None

    later = liaison(company, monkeypatch, "export", "--since", NOW.date().isoformat())
    assert len(later.stdout.splitlines()) < len(records)
    bad = liaison(company, monkeypatch, "export", "--since", "last week")
    assert bad.exit_code == 2 and "--since 'last week' is not a date" in bad.output


def test_a_purge_removes_personal_data_and_keeps_every_digest_figure(
    company: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    weeks = [Week.last_complete(NOW, "UTC").before(n) for n in range(0, 8)]
    with company.session() as session:
        before = [build(session, w, now=NOW).to_json() for w in weeks]
        old = session.exec(select(Lead).where(Lead.created_at < CUTOFF)).all()
        young = session.exec(select(Lead).where(Lead.created_at >= CUTOFF)).all()
        young_names = {lead.id: lead.name for lead in young}
    assert old and young
    with company.session() as session:  # a handoff card that was sent, naming the lead
        card = {"title": f"New lead: {old[0].name}", "fields": [["Email", old[0].email]]}
        for status in ("sent", "pending"):
            session.add(
                OutboxMessage(
                    key=f"handoff:{old[0].id}:{status}",
                    lead_id=old[0].id,
                    member_id=None,
                    target="slack:C0HANDOFF",
                    card=card,
                    status=status,
                    not_before=NOW,
                    created_at=NOW,
                )
            )
    cutoff = CUTOFF.date().isoformat()

    dry = liaison(company, monkeypatch, "purge", "--before", cutoff, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"{len(old)} leads created before {cutoff} would lose" in dry.stdout
    with company.session() as session:
        assert all(lead.name != "(removed)" for lead in session.exec(select(Lead)).all())

    done = liaison(company, monkeypatch, "purge", "--before", cutoff)
    assert done.exit_code == 0, done.output
    assert f"{len(old)} leads created before {cutoff} lost their personal data" in done.stdout
    assert "1 sent cards" in done.stdout
    with company.session() as session:
        for lead in session.exec(select(Lead).where(Lead.created_at < CUTOFF)):
            assert (lead.name, lead.email, lead.company, lead.title) == (
                "(removed)",
                None,
                None,
                None,
            )
            assert lead.attributes == {} and lead.owner_email is None
        old_ids = [lead.id for lead in old]
        for event in session.exec(select(LeadEvent).where(LeadEvent.lead_id.in_(old_ids))):  # type: ignore[attr-defined]
            assert not {"note", "comment", "question", "answer", "owner_email"} & set(event.data)
        cards = session.exec(
            select(OutboxMessage).where(OutboxMessage.lead_id.in_(old_ids))  # type: ignore[union-attr]
        ).all()
        assert sorted((m.status, str(m.card)) for m in cards) == [
            ("pending", str(card)),
            ("sent", "{}"),
        ]
        kept = session.exec(select(Lead).where(Lead.created_at >= CUTOFF))
        assert {lead.id: lead.name for lead in kept} == young_names
        after = [build(session, w, now=NOW).to_json() for w in weeks]
    assert after == before

    again = liaison(company, monkeypatch, "purge", "--before", cutoff)
    assert "0 leads created before" in again.stdout  # done once, nothing left to do
