"""The weekly digest over 100,000 and 1,000,000 leads on PostgreSQL, against hand-written
SQL that computes the same numbers, in the same run; and peak memory at both sizes.

Run from the repository root:

    .venv/bin/python bench/digest.py [--sizes 100000,1000000] [--repeat 5] [--reuse]

For each size a scratch database `liaison_bench_digest_<size>` is created on the server of
LIAISON_TEST_PG (default: the tests' one) and filled by the real `liaison demo --leads N`
(a reproducible company history over 26 weeks); `--reuse` keeps and reuses it. Then, each
in a fresh process (so peak memory is its own), alternating, `--repeat` times each after
one warm-up:

- liaison: `digests.digest.build(session, week, now=...)` — every figure of the digest for
  the last complete week (funnel, both sides' commitments, rejections, percentiles,
  conversion, trend, feedback, approvals, insights, wins), through the storage layer;
- sql: the same figures as hand-written SQL text (below), on a bare psycopg connection.

The figures of both are compared (they must be equal). Printed: median and p90 seconds,
the ratio of medians (target ≤ 1.3×, under 3 s), and each process's peak RSS (target: the
same at 1M as at 100k, since nothing is loaded per lead).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get(
    "LIAISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# The hand-written SQL: one statement per figure, as a person would write them.
SQL: dict[str, str] = {
    "generated": "SELECT count(*) FROM leads WHERE created_at >= %(s)s AND created_at < %(e)s",
    "handed_off": "SELECT count(*) FROM leads WHERE handed_off_at >= %(s)s AND handed_off_at < %(e)s",
    "verdicts": "SELECT state, count(*) FROM leads WHERE verdict_at >= %(s)s AND verdict_at < %(e)s "
    "GROUP BY state ORDER BY state",
    "waiting": "SELECT count(*) FROM leads WHERE handed_off_at < %(e)s "
    "AND (verdict_at IS NULL OR verdict_at >= %(e)s)",
    "first_touched": "SELECT count(*) FROM leads WHERE first_touch_at >= %(s)s AND first_touch_at < %(e)s",
    "attempts": "SELECT count(*), count(DISTINCT lead_id) FROM lead_events "
    "WHERE kind = 'attempt_logged' AND at >= %(s)s AND at < %(e)s",
    "outcomes": "SELECT data->>'outcome', count(DISTINCT lead_id) FROM lead_events "
    "WHERE kind = 'attempt_logged' AND at >= %(s)s AND at < %(e)s "
    "AND data->>'outcome' IN ('meeting_booked', 'opportunity', 'won', 'lost') GROUP BY 1 ORDER BY 1",
    "campaign_leads": "SELECT coalesce(c.name, ''), count(*) FROM leads l LEFT JOIN campaigns c "
    "ON c.id = l.campaign_id WHERE l.created_at >= %(s)s AND l.created_at < %(e)s GROUP BY 1 ORDER BY 1",
    "campaign_verdicts": "SELECT coalesce(c.name, ''), "
    "sum(CASE WHEN l.state = 'accepted' THEN 1 ELSE 0 END), "
    "sum(CASE WHEN l.state = 'not_a_fit' THEN 1 ELSE 0 END) FROM leads l LEFT JOIN campaigns c "
    "ON c.id = l.campaign_id WHERE l.verdict_at >= %(s)s AND l.verdict_at < %(e)s GROUP BY 1 ORDER BY 1",
    "rejections_campaign": "SELECT coalesce(c.name, ''), r.text, count(*) FROM lead_rejections r "
    "LEFT JOIN campaigns c ON c.id = r.campaign_id WHERE r.at >= %(s)s AND r.at < %(e)s "
    "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
    "rejections_version": "SELECT definition_version, text, count(*) FROM lead_rejections "
    "WHERE at >= %(s)s AND at < %(e)s GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
    **{
        f"clocks_{kind}": "SELECT count(*), coalesce(sum(CASE WHEN outcome = 'met' THEN 1 ELSE 0 END), 0) "
        f"FROM sla_clocks WHERE kind = '{kind}' AND closed_at >= %(s)s AND closed_at < %(e)s "
        "AND outcome IN ('met', 'missed')"
        for kind in ("first_touch", "attempts", "verdict", "info_answer")
    },
    "first_touch_percentiles": "SELECT rn, n, business_seconds FROM (SELECT business_seconds, "
    "ROW_NUMBER() OVER (ORDER BY business_seconds) AS rn, COUNT(*) OVER () AS n FROM sla_clocks "
    "WHERE kind = 'first_touch' AND closed_at >= %(s)s AND closed_at < %(e)s "
    "AND outcome IN ('met', 'missed') AND business_seconds IS NOT NULL) ranked "
    "WHERE rn = (n + 1) / 2 OR rn = (9 * n + 9) / 10 ORDER BY rn",
    "info_overdue": "SELECT count(*) FROM sla_clocks WHERE kind = 'info_answer' "
    "AND closed_at IS NULL AND stage >= 2",
    "attempts_per_lead": "SELECT avg(l.attempts) FROM sla_clocks k JOIN leads l ON l.id = k.lead_id "
    "WHERE k.kind = 'attempts' AND k.closed_at >= %(s)s AND k.closed_at < %(e)s "
    "AND k.outcome IN ('met', 'missed', 'ended')",
    "conversion": "SELECT least(l.attempts, 7), count(*), "
    "sum(CASE WHEN l.outcome IN ('meeting_booked', 'opportunity', 'won') THEN 1 ELSE 0 END) "
    "FROM sla_clocks k JOIN leads l ON l.id = k.lead_id WHERE k.kind = 'attempts' "
    "AND k.closed_at >= %(c)s AND k.closed_at < %(e)s AND k.outcome IN ('met', 'missed', 'ended') "
    "GROUP BY 1 ORDER BY 1",
    "policy": "SELECT * FROM sla_policies WHERE created_at <= %(e)s ORDER BY version DESC LIMIT 1",
    "feedback_sent": "SELECT count(*), (SELECT count(*) FROM feedback_recipients WHERE request_id IN "
    "(SELECT id FROM feedback_requests WHERE created_at >= %(s)s AND created_at < %(e)s)), "
    "(SELECT count(*) FROM (SELECT DISTINCT request_id, member_id FROM feedback_answers WHERE "
    "request_id IN (SELECT id FROM feedback_requests WHERE created_at >= %(s)s AND created_at < %(e)s)) a), "
    "(SELECT count(*) FROM feedback_requests WHERE closed_at >= %(s)s AND closed_at < %(e)s) "
    "FROM feedback_requests WHERE created_at >= %(s)s AND created_at < %(e)s",
    "approvals": "SELECT sum(CASE WHEN created_at >= %(s)s AND created_at < %(e)s AND status <> 'bootstrap' "
    "THEN 1 ELSE 0 END), sum(CASE WHEN status = 'approved' AND decided_at >= %(s)s AND decided_at < %(e)s "
    "THEN 1 ELSE 0 END) FROM approval_requests",
    "insights": "SELECT sum(CASE WHEN created_at >= %(s)s AND created_at < %(e)s THEN 1 ELSE 0 END), "
    "sum(CASE WHEN closed_at >= %(s)s AND closed_at < %(e)s THEN 1 ELSE 0 END), "
    "sum(CASE WHEN closed_at >= %(s)s AND closed_at < %(e)s AND content_id IS NOT NULL THEN 1 ELSE 0 END) "
    "FROM insights",
    "wins": "SELECT w.id, a.name, m.name, c.name FROM wins w JOIN members a ON a.id = w.author_id "
    "LEFT JOIN members m ON m.id = w.marketer_id LEFT JOIN campaigns c ON c.id = w.campaign_id "
    "WHERE w.created_at >= %(s)s AND w.created_at < %(e)s ORDER BY w.created_at",
}
TREND = ("generated", "verdicts", "clocks_first_touch", "clocks_attempts")  # per earlier week


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def week_for(url: str) -> Any:
    from digests.digest import Week

    return Week.last_complete(datetime.now(UTC), "UTC")


def child_liaison(url: str, repeat: int) -> dict[str, Any]:
    from digests.digest import build
    from storage.db import Store

    store = Store.open(url, migrate=False)
    week, times, figures = week_for(url), [], {}
    for n in range(repeat + 1):
        started = time.perf_counter()
        with store.session() as session:
            digest = build(session, week, now=datetime.now(UTC))
        if n:
            times.append(time.perf_counter() - started)
    f, m, sales = digest.funnel, digest.marketing, digest.sales
    figures = {
        "generated": f.generated,
        "accepted": f.accepted,
        "not_a_fit": f.not_a_fit,
        "waiting": f.waiting,
        "attempts": f.attempts,
        "outcomes": f.outcomes,
        "campaigns": len(m.campaigns),
        "rejections": sum(r.count for r in m.rejections_by_campaign),
        "median_h": sales.first_touch_median_hours,
        "p90_h": sales.first_touch_p90_hours,
        "conversion": [[b.attempts, b.leads, b.converted] for b in digest.conversion],
        "trend_leads": [h.leads for h in digest.trend],
    }
    return {"times": times, "peak_mb": peak_rss_mb(), "figures": figures, "week": week.label}


def child_sql(url: str, repeat: int) -> dict[str, Any]:
    import psycopg

    week = week_for(url)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    times: list[float] = []
    with psycopg.connect(plain) as connection:
        for n in range(repeat + 1):
            started = time.perf_counter()
            results = _all_figures(connection, week)
            if n:
                times.append(time.perf_counter() - started)
    verdicts = dict(results["verdicts"])
    outcomes = dict(results["outcomes"])
    ranks = {int(rn): float(v) for rn, _, v in results["first_touch_percentiles"]}
    total = results["first_touch_percentiles"][0][1] if ranks else 0
    figures = {
        "generated": results["generated"][0][0],
        "accepted": verdicts.get("accepted", 0),
        "not_a_fit": verdicts.get("not_a_fit", 0),
        "waiting": results["waiting"][0][0],
        "attempts": results["attempts"][0][0],
        "outcomes": {
            k: outcomes.get(k, 0) for k in ("meeting_booked", "opportunity", "won", "lost")
        },
        "campaigns": len(
            {r[0] for r in results["campaign_leads"]} | {r[0] for r in results["campaign_verdicts"]}
        ),
        "rejections": sum(r[2] for r in results["rejections_campaign"]),
        "median_h": ranks[(total + 1) // 2] / 3600 if ranks else None,
        "p90_h": ranks[(9 * total + 9) // 10] / 3600 if ranks else None,
        "conversion": [[int(a), int(n), int(c)] for a, n, c in results["conversion"]],
        "trend_leads": [*(r[0][0] for r in results["trend_generated"]), results["generated"][0][0]],
    }
    return {"times": times, "peak_mb": peak_rss_mb(), "figures": figures, "week": week.label}


def _all_figures(connection: Any, week: Any) -> dict[str, Any]:
    params = {"s": week.start, "e": week.end, "c": week.end - timedelta(weeks=12)}
    results: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for name, sql in SQL.items():
            cursor.execute(sql, params)
            results[name] = cursor.fetchall()
        results["trend_generated"] = []
        for back in (3, 2, 1):
            earlier = week.before(back)
            span = {"s": earlier.start, "e": earlier.end}
            for name in TREND:
                cursor.execute(SQL[name], span)
                rows = cursor.fetchall()
                if name == "generated":
                    results["trend_generated"].append(rows)
    connection.rollback()
    return results


# ---------------------------------------------------------------- the parent


def database(size: int, reuse: bool) -> str:
    import psycopg

    name = f"liaison_bench_digest_{size}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if exists and reuse:
            return url
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from app import main; main()",
            "demo",
            "--leads",
            str(size),
            "--seed",
            "20261201",
        ],
        cwd=ROOT,
        env={**os.environ, "LIAISON_DATABASE_URL": url},
        check=True,
    )
    print(f"  demo with {size:,} leads: {time.perf_counter() - started:.1f} s")
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as c:
        c.execute("VACUUM ANALYZE")
    return url


def measure(kind: str, url: str, repeat: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--url", url, "--repeat", str(repeat)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (9 * len(ordered) + 9) // 10 - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the databases")
    parser.add_argument("--child", choices=["liaison", "sql"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = child_liaison if args.child == "liaison" else child_sql
        print(json.dumps(run(args.url, args.repeat), default=str))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size:,} leads")
        url = database(size, args.reuse)
        liaison_runs, sql_runs = [], []
        for _ in range(2):  # alternate the two, twice
            sql_runs.append(measure("sql", url, args.repeat))
            liaison_runs.append(measure("liaison", url, args.repeat))
        ours = [t for r in liaison_runs for t in r["times"]]
        bare = [t for r in sql_runs for t in r["times"]]
        same = liaison_runs[0]["figures"] == sql_runs[0]["figures"]
        if not same:
            print("  figures differ:", liaison_runs[0]["figures"], sql_runs[0]["figures"])
        ratio = statistics.median(ours) / statistics.median(bare)
        rows.append(
            (
                size,
                liaison_runs[0]["week"],
                statistics.median(bare),
                statistics.median(ours),
                p90(ours),
                ratio,
                max(r["peak_mb"] for r in sql_runs),
                max(r["peak_mb"] for r in liaison_runs),
                same,
            )
        )
    print()
    print(
        "| leads | week | sql median s | liaison median / p90 s | ratio | ≤ 1.3× | < 3 s | peak MB sql / liaison | same figures |"
    )
    print("|---:|---|---:|---:|---:|:-:|:-:|---:|:-:|")
    for size, week, bare, ours, ours90, ratio, mem_sql, mem_ours, same in rows:
        print(
            f"| {size:,} | {week} | {bare:.3f} | {ours:.3f} / {ours90:.3f} | {ratio:.2f}× | "
            f"{'PASS' if ratio <= 1.3 else 'FAIL'} | {'PASS' if ours90 < 3 else 'FAIL'} | "
            f"{mem_sql:.0f} / {mem_ours:.0f} | {'yes' if same else 'NO'} |"
        )
    if len(rows) >= 2:
        print(f"\npeak memory, largest / smallest size (liaison): {rows[-1][7] / rows[0][7]:.2f}×")
    if not all(r[-1] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
