"""The Monday digest as scheduled work: one `digest_runs` row per week, due at its time,
claimed with FOR UPDATE SKIP LOCKED, built and owed to the outbox in the same transaction,
so it goes out exactly once however many instances tick. Opted-in members also get a
private "your week" note with their own figures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.core.business_time import Company, Schedule, next_working_moment
from bot.core.messages import Card, Fact, Report, card_to_dict, report_to_dict
from bot.core.text import hours, percent, text_for
from digests.digest import Week, build
from digests.report import report
from handlers.clocks import TickReport
from storage import channels, digest_runs, policies
from storage import digest as figures
from storage import outbox as stored_outbox
from storage.calendars import Calendars
from storage.db import Store
from storage.models import DigestRun, Member
from storage.values import NewMessage

log = logging.getLogger(__name__)
CATCH_UP = timedelta(hours=24)  # after downtime, a late digest still goes out this long


def digest_report(session: Session, week: Week, now: datetime) -> Report:
    """The digest of `week` in words, with its chart (the post, and every preview)."""
    from digests.chart import chart_png  # matplotlib loads only when a digest is built

    digest = build(session, week, now=now)
    version = policies.current_policy(session).version
    return report(digest, version=version, chart=chart_png(digest))


def digest_message(session: Session, week: Week, *, target: str, now: datetime) -> NewMessage:
    """The outbox row that posts `week`'s digest to `target`: its key is the week, so the
    digest of a week is owed once, by the scheduler or by hand."""
    made = digest_report(session, week, now)
    return NewMessage(
        key=f"digest:{week.label}",
        member_id=None,
        target=target,
        card={"report": report_to_dict(made), "title": made.title},
        not_before=now,
        created_at=now,
    )


class Digests:
    """The due work of the weekly digest (one of the scheduler's passes)."""

    def __init__(
        self,
        schedule: Schedule,
        target: str | None,
        built: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.schedule = schedule
        self.default_target = target
        self.built = built  # hears how long each digest took to build

    def __call__(self, store: Store, *, now: datetime, company: Company) -> TickReport:
        report_ = TickReport()
        week = Week.last_complete(now, self.schedule.tz)
        due = self.schedule.due(week.end)
        if due > now:
            week = week.before()  # this week's digest is not due yet; last week's may be
            due = self.schedule.due(week.end)
        if now - due <= CATCH_UP:  # a digest missed for longer is posted by hand only
            with store.session() as session:
                digest_runs.plan_run(session, week=week.label, due=due, now=now)
        with store.session() as session:
            for run in digest_runs.claim_due_runs(session, now=now):
                self._post(session, run, now, company, report_)
        return report_

    def _post(
        self, session: Session, run: DigestRun, now: datetime, company: Company, out: TickReport
    ) -> None:
        week = Week.of(run.week, self.schedule.tz)
        target = channels.channel_target(session, kind="digest") or self.default_target
        messages = []
        if target:
            started = time.perf_counter()
            messages.append(digest_message(session, week, target=target, now=now))
            self.built(time.perf_counter() - started)
        else:
            log.warning("the %s digest is due but no digest channel is set", run.week)
        messages += your_week_notes(session, week, now, company)
        keys = stored_outbox.enqueue_many(session, messages=messages)
        digest_runs.mark_posted(session, run=run, target=target, now=now)
        out.looked_at += 1
        out.messages += len(keys)
        out.keys += keys


def your_week_notes(
    session: Session, week: Week, now: datetime, company: Company
) -> list[NewMessage]:
    """A private note with their own figures for each member who opted in."""
    members = digest_runs.opted_in(session)
    calendars = Calendars(session, company)
    notes = []
    for member in members:
        mine = figures.member_week(
            session, member_id=member.id or 0, start=week.start, end=week.end
        )
        try:
            not_before = next_working_moment(calendars.of(member), now)
        except ValueError:
            not_before = now
        notes.append(
            NewMessage(
                key=f"your-week:{week.label}:{member.id}",
                member_id=member.id,
                card=card_to_dict(your_week_card(member, week, mine)),
                not_before=not_before,
                created_at=now,
            )
        )
    return notes


def your_week_card(member: Member, week: Week, mine: figures.MemberWeek) -> Card:
    touch, answers = mine.first_touch, mine.answers
    fields = [
        Fact(text_for("your_week_leads"), text_for("your_week_leads_value", m=mine)),
        Fact(
            text_for("your_week_first_touch"),
            text_for(
                "your_week_clock_value",
                closed=touch.closed,
                share=percent(touch.met / touch.closed) if touch.closed else "",
                median=hours(touch.median_seconds / 3600) if touch.median_seconds else "",
            ),
        ),
        Fact(text_for("your_week_attempts"), str(mine.attempts)),
    ]
    if answers.closed:
        fields.append(
            Fact(
                text_for("your_week_answers"),
                text_for(
                    "your_week_clock_value",
                    closed=answers.closed,
                    share=percent(answers.met / answers.closed),
                    median=hours(answers.median_seconds / 3600) if answers.median_seconds else "",
                ),
            )
        )
    return Card(
        title=text_for("your_week_title", week=week.label, days=week.days),
        text=text_for("your_week_intro", name=member.name),
        fields=tuple(fields),
        context=text_for("your_week_context"),
    )
