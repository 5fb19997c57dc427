"""Benchmark children: a bench script started again with `--serve ROLE`, which prints one JSON
line when it is ready (its URL, its pid) and one more, its statistics, when its stdin closes.
`Child` is the parent's side of that; `listen`, `tell_parent` and `until_told` the child's.

The bench scripts run as files (`python bench/ack.py`), so they import this module by path
(`sys.path` gets the repository root first)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"

LINE_LIMIT = 64 * 1024 * 1024  # a statistics line may list every card a stand-in counted
# Children started and not yet reaped, for a last-resort cleanup after Ctrl-C or a crash.
LIVE: set[int] = set()


@dataclass
class Child:
    """One child process of a bench run, speaking JSON lines on its stdout."""

    role: str
    process: asyncio.subprocess.Process
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def start(cls, script: Path, role: str, *args: str, timeout: float = 60.0) -> Child:
        """Run `script --serve role *args` from the repository root; return once it is ready."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            "--serve",
            role,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(script.resolve().parent.parent),
            limit=LINE_LIMIT,
        )
        LIVE.add(process.pid)
        child = cls(role, process)
        try:
            info = await asyncio.wait_for(child.read_json(), timeout)
        except TimeoutError:
            await child.kill()
            raise RuntimeError(f"{role} did not start within {timeout:.0f} s") from None
        if info is None:
            await process.wait()
            LIVE.discard(process.pid)
            raise RuntimeError(f"{role} exited ({process.returncode}) before starting")
        child.info = info
        return child

    async def read_json(self) -> dict[str, Any] | None:
        """The child's next JSON line (anything else it prints is passed through)."""
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.startswith(b"{"):
                data: dict[str, Any] = json.loads(line)
                return data
            sys.stderr.write(line.decode(errors="replace"))
        return None

    async def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Close its stdin; it finishes its work, prints its statistics and exits."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            stats = await asyncio.wait_for(self.read_json(), timeout)
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return {}
        finally:
            LIVE.discard(self.process.pid)
        return stats or {}

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        LIVE.discard(self.process.pid)


# ------------------------------------------------------------------ the child's side


def tell_parent(data: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def until_told(role: str, max_seconds: float | None = None) -> None:
    """Wait until the parent closes our stdin (or `max_seconds` pass, said on stderr)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def wait() -> None:  # a daemon thread, not the loop's executor, which the work may fill
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, daemon=True).start()
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        print(
            f"{role}: no word from the parent after {max_seconds:.0f} s; stopping", file=sys.stderr
        )


async def listen(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free loopback port; the runner (to clean up) and the base URL."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{HOST}:{port}"


async def serve_until_told(
    app: web.Application,
    max_seconds: float,
    ready: Callable[[str], Awaitable[dict[str, Any]]],
    finish: Callable[[], Awaitable[dict[str, Any]]],
) -> None:
    """Serve `app`, report its URL (and what `ready` adds), wait to be told to stop, report
    what `finish` returns."""
    runner, url = await listen(app)
    try:
        tell_parent({"url": url, **await ready(url)})
        await until_told("server", max_seconds)
        tell_parent(await finish())
    finally:
        await runner.cleanup()
