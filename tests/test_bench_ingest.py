"""The ingest benchmark counts right: at a tiny size on SQLite, through the real `liaison
serve` and the Slack stand-in, every lead is reported created once and every handoff card
delivered once to its owner's DM, with no 5xx. This checks the instrument, not the speed."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_bench_tells_missing_doubled_and_misdelivered_cards_apart() -> None:
    bench = bench_module()
    load = bench.Load(last_answer=10.0)
    for lead_id in range(1, 5):  # lead i-1 is owned by rep (i-1) mod 2: D0000001, D0000002…
        external_id = f"BENCH-{lead_id - 1:06d}"
        load.created[external_id] = 1
        load.lead_ids[external_id] = lead_id
    final = {
        "handoffs": [
            ["D0000001", 1, 1],  # once, in its owner's DM
            ["D0000002", 2, 2],  # twice
            ["D0000002", 3, 1],  # in rep 2's DM, but rep 1 owns it
            ["D0000001", 99, 1],  # a lead the webhook never reported
        ],  # lead 4: missing
        "card_times": [8.0, 9.0, 11.0, 12.0, 14.0],
        "over_limit": 2,
        "stormed": 0,
    }
    result = bench.ingest_figures("liaison x", "sqlite", "liaison", False, load, args(4, 2))
    bench.delivery_figures(result, load, final, args(4, 2))
    assert (result.expected_cards, result.cards) == (4, 5)
    assert (result.missing, result.doubled, result.wrong_channel) == (1, 1, 1)
    assert (result.unknown_leads, result.over_limit) == (1, 2)
    assert result.owed_at_last_answer == 3
    assert result.answer_to_last_card_s == 4.0
    assert result.cards_per_s == 5 / 6
    verdicts = {label: passed for label, passed, _ in bench.verdicts(result, args(4, 2))}
    assert not verdicts["every lead created once, its card delivered exactly once"]
    assert not verdicts["never over Slack's pace"]


def args(leads: int, reps: int) -> argparse.Namespace:
    return argparse.Namespace(leads=leads, reps=reps, batch=100)


def test_the_ingest_bench_accounts_for_every_lead_and_card(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "ingest.py"),
        *("--leads", "200", "--reps", "40", "--batch", "50", "--parallel", "4"),
        *("--db", "sqlite", "--settle-seconds", "60", "--max-seconds", "60"),
        *("--json", str(out)),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    # Exit 1 is a missed speed target (expected at this size); anything else is a crash.
    assert done.returncode in (0, 1), done.stdout + done.stderr
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"floor sqlite", "liaison sqlite"}
    for result in results.values():
        assert (result["created"], result["created_twice"], result["never_created"]) == (200, 0, 0)
        assert result["requests"] == result["bodies"] == 4
        assert (result["duplicates"], result["server_errors"], result["given_up"]) == (0, 0, 0)
    liaison = results["liaison sqlite"]
    assert (liaison["expected_cards"], liaison["cards"]) == (200, 200)
    assert (liaison["missing"], liaison["doubled"], liaison["wrong_channel"]) == (0, 0, 0)
    assert liaison["unknown_leads"] == 0
    assert liaison["calls"]["chat.postMessage"] == 200
    assert liaison["peak_rss_mb"] > 0
    assert "Lead ingestion and delivery" in done.stdout
