"""Log lines: text for a person at a terminal, one JSON object per line for a log pipeline,
each carrying the id of the request or activity it happened in (never a secret, never a
message body: only what the code puts in the message)."""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar
from typing import Literal

LogFormat = Literal["text", "json"]
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The request (HTTP) or activity (Teams) being handled; copied into the tasks and threads
# it starts, so their lines carry it too.
request_id: ContextVar[str | None] = ContextVar("liaison_request_id", default=None)


def new_request_id(given: str | None = None) -> str:
    """The id for a new request: the caller's own (a proxy's X-Request-Id), else a fresh one."""
    chosen = (given or "").strip()[:64]
    if not chosen or not chosen.isprintable():
        chosen = uuid.uuid4().hex
    request_id.set(chosen)
    return chosen


class RequestIds(logging.Filter):
    """Puts the current request id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure(fmt: LogFormat, *, verbose: bool = False) -> None:
    """The root logger writes to stderr in `fmt`, replacing the handler an earlier call put
    there; like `logging.basicConfig`, it leaves alone a root logger someone else set up
    (a host process, a test runner). APScheduler's per-run lines and Alembic's chatter are
    left out unless `verbose`; Python's warnings become log lines too."""
    logging.captureWarnings(True)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # Not two lines per tick ("Running job…", "…executed successfully"); faults still show.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, OURS, False)]:
        root.removeHandler(old)
    if root.handlers:
        return
    handler = logging.StreamHandler()
    setattr(handler, OURS, True)
    handler.addFilter(RequestIds())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


OURS = "_liaison_handler"  # marks the handler `configure` put on the root logger
