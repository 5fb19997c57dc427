"""Business-time arithmetic for generating history fast: one member's working time over a
bounded period, as arrays, so `add_business` and `business_seconds` become bisections.

The spans are the engine's own (`business_time.working_spans` of the member's calendar,
holidays and time away included), so the results are the same as the engine's; moments
are integer microseconds since the epoch, so they are exact. Outside the period the
engine's functions answer."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta

from bot.core.business_time import Calendar, add_business, working_spans

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
SECOND = 1_000_000  # microseconds


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def moment(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class WorkTime:
    """A member's working spans from `since` to `until`, with the working time before each."""

    def __init__(self, calendar: Calendar, since: datetime, until: datetime) -> None:
        self.calendar = calendar
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.before: list[int] = []  # working microseconds from `since` to lo[j]
        self.through: list[int] = []  # … to hi[j]
        total = 0
        for start, end in working_spans(calendar, since):
            if start >= until:
                break
            lo, hi = micros(start), micros(end)
            self.lo.append(lo)
            self.hi.append(hi)
            self.before.append(total)
            total += hi - lo
            self.through.append(total)

    def _span(self, at: int) -> int:
        """The first span that ends after `at` (the span `at` is in, or the next one)."""
        j = bisect_right(self.hi, at)
        if j == len(self.hi):
            raise LookupError("outside the period")
        return j

    def worked(self, at: int) -> int:
        """Working microseconds from the start of the period to `at`."""
        j = self._span(at)
        return self.before[j] + max(0, at - self.lo[j])

    def add(self, at: int, us: int) -> int:
        """`add_business(calendar, at, us)`: the moment `us` of working time after `at`."""
        try:
            j = self._span(at)
        except LookupError:
            return self._engine_add(at, us)
        target = self.before[j] + max(0, at - self.lo[j]) + us
        k = bisect_left(self.through, target, j)
        if k == len(self.through):
            return self._engine_add(at, us)
        return self.lo[k] + (target - self.before[k])

    def between(self, start: int, end: int) -> int:
        """`business_seconds(calendar, start, end)`, in microseconds (0 unless end > start)."""
        return self.worked(end) - self.worked(start) if end > start else 0

    def _engine_add(self, at: int, us: int) -> int:
        return micros(add_business(self.calendar, moment(at), us / SECOND))
