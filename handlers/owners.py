"""Owner look-ups in the platform directories (Slack `users.lookupByEmail`, Teams): a few
at a time, one at a time per email however many batches name it, and remembered for a
while, so a burst of 1,000 leads for 200 new owners asks about 200 emails, once each."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from enum import StrEnum
from functools import partial

from bot.core.delivery import Directory, LookupFailed

log = logging.getLogger(__name__)

LOOKUPS_AT_ONCE = 8
# How long an answer (found, or nobody has that email) is trusted: someone added to Slack
# meanwhile gets the leads sent after this. A failed lookup is never remembered.
CACHE_SECONDS = 300.0
CACHE_SIZE = 100_000  # emails remembered at most (the oldest answers are forgotten first)


class Lookup(StrEnum):
    """What the directories said about an owner's email."""

    found = "found"
    not_found = "not_found"
    failed = "failed"  # no directory found them and at least one could not answer


class OwnerLookups:
    """Asks the directories about owner emails: bounded, deduplicated, cached with expiry."""

    def __init__(
        self,
        directories: Sequence[Directory],
        *,
        cache_seconds: float = CACHE_SECONDS,
        at_once: int = LOOKUPS_AT_ONCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directories = list(directories)
        self.cache_seconds = cache_seconds
        self.at_once = at_once
        self.clock = clock
        self._cache: dict[str, tuple[Lookup, float]] = {}
        self._asking: dict[str, asyncio.Task[Lookup]] = {}
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def look_up(self, emails: Collection[str]) -> dict[str, Lookup]:
        """What the directories say of each email: a remembered answer, the answer to the
        question another caller is asking right now, or a new question. A directory that
        fails during this call is not asked again in it: its other emails count as failed
        too, so an outage costs one timeout per call, not one per owner."""
        loop = asyncio.get_running_loop()
        down: set[int] = set()
        results: dict[str, Lookup] = {}
        asking: dict[str, asyncio.Task[Lookup]] = {}
        for email in sorted(set(emails)):
            remembered = self._remembered(email)
            if remembered is not None:
                results[email] = remembered
                continue
            task = self._asking.get(email)
            if task is None or task.get_loop() is not loop:
                task = loop.create_task(self._ask_gated(email, down))
                self._asking[email] = task
                task.add_done_callback(partial(self._asked, email))
            asking[email] = task
        for email, task in asking.items():
            # Shielded: a caller that goes away does not cancel the others' question.
            results[email] = await asyncio.shield(task)
        return results

    def _remembered(self, email: str) -> Lookup | None:
        entry = self._cache.get(email)
        if entry is None:
            return None
        result, until = entry
        if self.clock() >= until:
            del self._cache[email]
            return None
        return result

    def _asked(self, email: str, task: asyncio.Task[Lookup]) -> None:
        if self._asking.get(email) is task:
            del self._asking[email]
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if result is Lookup.failed:
            return
        self._cache.pop(email, None)
        self._cache[email] = (result, self.clock() + self.cache_seconds)
        while len(self._cache) > CACHE_SIZE:
            del self._cache[next(iter(self._cache))]

    def _semaphore(self) -> asyncio.Semaphore:
        """The bound on lookups at once, for the running loop (`liaison import-leads` runs
        one loop per batch)."""
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(self.at_once))
        return self._gate[1]

    async def _ask_gated(self, email: str, down: set[int]) -> Lookup:
        async with self._semaphore():
            return await self._ask(email, down)

    async def _ask(self, email: str, down: set[int]) -> Lookup:
        failed = False
        for number, directory in enumerate(self.directories):
            if number in down:
                failed = True
                continue
            try:
                if await directory.find_by_email(email):
                    return Lookup.found
            except LookupFailed as error:
                log.warning("owner lookup failed, will retry: %s", error)
                down.add(number)
                failed = True
        return Lookup.failed if failed else Lookup.not_found
