"""The platforms' pace, kept by the sender: per conversation, and app-wide per Web API method.

Per conversation (a lane of the outbox) each platform's limits are GCRA buckets (`Bucket`:
one message every `interval` seconds, up to `burst` at once after a quiet spell):

- Slack, chat.postMessage: "1 message per second per channel, short bursts allowed". Liaison
  reads it as a burst of 3, then 1 per second.
- Teams, per bot per conversation: 7 per 1 s, 8 per 2 s, 60 per 30 s, 1,800 per hour
  (Microsoft's "Optimize your bot with rate limiting in Teams"). Kept with three buckets:
  1 per 2/7 s (at most 8 in any 2 s, 4 in any 1 s), and 44 at once then 1 per 2.05 s (at
  most 58 in any 30 s and 1,800 in any hour).

The sender keeps a bucket with the platform's *answer* to a message as its time and checks
the next message against it when the request leaves: a request arrives at the platform
before its answer comes back and after it is sent, so whatever the network or a busy
machine does to either, the platform sees the messages no closer together than the
bucket allows.

App-wide, Slack counts every method per app per workspace in tiers (`conversations.open`,
`users.lookupByEmail`, `chat.update`… 20–100+ per minute). Liaison does not guess those
numbers ahead; when Slack answers a method 429, that method waits out its `Retry-After`
for the whole process (`MethodGate`), so the other lanes do not hammer it meanwhile,
while chat.postMessage's 429 (a conversation's own pace) holds back only that lane.

Teams also limits each app, per tenant, to 50 requests a second: `Spacing` keeps the Teams
messenger's requests to 45 a second (a burst of 5), whatever the lanes do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Bucket:
    """One GCRA limit: messages `interval` seconds apart, `burst` at once after a quiet spell."""

    interval: float
    burst: int = 1
    due: float = float("-inf")  # the theoretical time of the next message

    def wait(self, now: float) -> float:
        """Seconds before a message may leave at `now` (0: it may)."""
        return max(0.0, self.due - (self.burst - 1) * self.interval - now)

    def answered(self, at: float) -> None:
        """A message was answered at `at` (the latest it can have arrived)."""
        self.due = max(at, self.due) + self.interval


@dataclass(frozen=True)
class Rule:
    """A platform's per-conversation limits, as (interval, burst) pairs."""

    limits: tuple[tuple[float, int], ...]

    def buckets(self) -> list[Bucket]:
        return [Bucket(interval, burst) for interval, burst in self.limits]

    @property
    def rate(self) -> float:
        """Messages per second a conversation sustains."""
        return min((1 / interval for interval, _ in self.limits if interval > 0), default=0.0)


SLACK = Rule(((1.0, 3),))
TEAMS = Rule(((2 / 7, 1), (2.05, 44)))
RULES: dict[str, Rule] = {"slack": SLACK, "teams": TEAMS, "console": Rule(())}
UNKNOWN = Rule(((1.0, 1),))  # a platform Liaison does not know: one a second


@dataclass
class Lane:
    """One conversation's pace: the buckets of every platform its messages may go through."""

    buckets: dict[str, list[Bucket]] = field(default_factory=dict)
    last: float = 0.0  # when it last sent (to forget quiet lanes)

    def wait(self, platforms: Sequence[str], now: float) -> float:
        return max(
            (b.wait(now) for p in platforms for b in self._of(p)),
            default=0.0,
        )

    def answered(self, platforms: Sequence[str], at: float) -> None:
        self.last = at
        for platform in platforms:
            for bucket in self._of(platform):
                bucket.answered(at)

    def _of(self, platform: str) -> list[Bucket]:
        if platform not in self.buckets:
            self.buckets[platform] = RULES.get(platform, UNKNOWN).buckets()
        return self.buckets[platform]

    def quiet(self, now: float) -> bool:
        """Every bucket is full again: the lane holds nothing worth keeping."""
        return all(b.wait(now) == 0.0 and b.due <= now for bs in self.buckets.values() for b in bs)


class MethodGate:
    """Web API methods the platform asked to wait (429 + Retry-After), app-wide."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.until: dict[str, float] = {}

    def blocked_for(self, method: str) -> float:
        """Seconds `method` must still wait (0: it may be called)."""
        until = self.until.get(method)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self.until[method]
            return 0.0
        return left

    def block(self, method: str, seconds: float) -> None:
        until = self.clock() + max(seconds, 0.0)
        self.until[method] = max(self.until.get(method, 0.0), until)


class Spacing:
    """Request starts at most `rate` a second, after a burst of `burst`, across every task
    that asks (each reserves the next slot, then waits for it): an app-wide limit."""

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 1 / rate
        self.burst = burst
        self.clock = clock
        self.due = float("-inf")

    async def acquire(self) -> None:
        now = self.clock()
        wait = max(0.0, self.due - (self.burst - 1) * self.interval - now)
        self.due = max(now, self.due) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


TEAMS_APP_RATE, TEAMS_APP_BURST = 45.0, 5  # under Teams' 50 requests/s per app and tenant
