"""A local stand-in for the Slack Web API (and response_url), recording every call.

As strict as Slack where Liaison can go wrong: every call needs the bot token
(`not_authed`, `invalid_auth`) and the scopes manifests/slack.yaml grants (`missing_scope`
with `needed` and `provided`, tests/slack_scopes.py); a method Liaison has never called is
`unknown_method`. `views.open` takes only a trigger id the stand-in minted (`trigger_id()`)
in the last 3 seconds, once (`expired_trigger_id`, `exchanged_trigger_id`); `chat.update`
only a message the bot posted, in its own channel (`message_not_found`,
`cant_update_message`, `channel_not_found`); blocks and views over Block Kit's limits are
refused as Slack refuses them (tests/blockkit.py), and text over 40,000 characters is
`msg_too_long`. Accepted calls are in `calls`, refused ones in `refused`.

It also plays Slack's side of Socket Mode: `apps.connections.open` (app-level token)
hands out a ws:// URL to its own `/link/` route, which greets with `hello`, lets a test
push envelopes with `push`, and records what the app sends back (the acks).

For benchmarks (off unless set): `pace` holds chat.postMessage to Slack's per-conversation
limit (a `Pace` token bucket; an over-limit post answers HTTP 429 `ratelimited` with
`Retry-After`, posts nothing, and is counted in `over_limit`), and `storm` answers some
chat.postMessage calls 429 whatever the pace (`Storm`; counted in `stormed`). Every posted
handoff card is counted per (conversation, lead) in `handoffs`."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.blockkit import block_errors, view_errors
from tests.loopback import serve_on_loopback
from tests.slack_scopes import METHOD_SCOPES, manifest_scopes

log = logging.getLogger(__name__)
TOKEN = "xoxb-test-token"
TRIGGER_TTL = 3.0  # seconds a trigger_id can open a modal (Slack's limit)
TEXT_LIMIT = 40_000  # characters of a message's `text`
CHANNEL_METHODS = ("chat.postMessage", "conversations.history", "conversations.replies")
CHANNEL_ID = ("C", "D", "G")  # what a conversation id starts with (U… is a user)
BLOCK_METHODS = ("chat.postMessage", "chat.postEphemeral", "chat.update")


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)  # when the request arrived
    answer: dict[str, Any] = field(default_factory=dict)  # what the stand-in said back


@dataclass
class Pace:
    """Slack's pace for chat.postMessage in one conversation ("1 message per second, short
    bursts allowed") as a token bucket: each conversation holds up to `burst` tokens, refilled
    continuously at `per_second`; a post takes one. With less than one token left the post is
    over the limit: 429 `ratelimited`, `Retry-After` the whole seconds until a token is back
    (at least 1), nothing posted, no token taken. Only posts Slack would accept count."""

    per_second: float = 1.0
    burst: int = 3
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at

    def take(self, channel: str, now: float) -> float:
        """0 when a post to `channel` may go now (a token taken), else the seconds to wait."""
        tokens, at = self._buckets.get(channel, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
        if tokens >= 1.0:
            self._buckets[channel] = (tokens - 1.0, now)
            return 0.0
        self._buckets[channel] = (tokens, now)
        return (1.0 - tokens) / self.per_second


@dataclass
class Storm:
    """A 429 storm on chat.postMessage whatever the pace: each call answers 429 `ratelimited`
    with `Retry-After: retry_after` with probability `fraction` (a seeded draw), and every
    call does during the first `lasting` seconds of every `every` seconds after the storm
    began (`every` 0: no such windows)."""

    fraction: float = 0.1
    retry_after: int = 1
    every: float = 0.0
    lasting: float = 0.0
    seed: int = 11
    began: float = field(default_factory=time.monotonic)
    _draw: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._draw = random.Random(self.seed)

    def strikes(self, now: float) -> bool:
        if self.every > 0 and (now - self.began) % self.every < self.lasting:
            return True
        return self._draw.random() < self.fraction


def handoff_lead(message: dict[str, Any]) -> int | None:
    """The lead a posted message is the handoff card of (its outbox key `handoff:<lead id>`
    in the message metadata), else None."""
    metadata = message.get("metadata")
    payload = metadata.get("event_payload") if isinstance(metadata, dict) else None
    key = str(payload.get("key", "")) if isinstance(payload, dict) else ""
    kind, _, lead = key.partition(":")
    return int(lead) if kind == "handoff" and lead.isdigit() else None


@dataclass
class SlackStandIn:
    """Answers the Web API methods Liaison uses; `users` maps user id → users.info user."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    refused: list[Call] = field(default_factory=list)
    _throttled: dict[str, tuple[int, int]] = field(default_factory=dict)
    url: str = ""
    socket_messages: list[dict[str, Any]] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _tickets: set[str] = field(default_factory=set)
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    # Seconds chat.postMessage takes to answer, after the message is recorded as posted
    # (a slow Slack: the message is accepted before the sender hears so).
    post_delay: float = 0.0
    # Files uploaded with files_upload_v2: id → filename, title, channel and the bytes.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The bot token the workspace issued, and the scopes the installed manifest granted.
    token: str = TOKEN
    scopes: frozenset[str] = field(default_factory=manifest_scopes)
    # Messages the bot posted: ts → channel (what chat.update may touch).
    channel_of_ts: dict[str, str] = field(default_factory=dict)
    _triggers: dict[str, float] = field(default_factory=dict)
    _exchanged: set[str] = field(default_factory=set)
    _failing: dict[str, list[str]] = field(default_factory=dict)
    # Conversations Slack refuses every post to, with the error it answers (a DM with a
    # deactivated user, a channel that was archived…).
    refusing: dict[str, str] = field(default_factory=dict)
    # Messages posted, by conversation (a DM under its D… id), oldest first, with their
    # metadata: what conversations.history and conversations.replies answer from.
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The next `hang_posts` chat.postMessage calls never answer and post nothing (a Slack
    # that hangs), until the stand-in stops.
    hang_posts: int = 0
    # An outage: while set, every Web API call answers 500 (recorded in `refused`).
    down: bool = False
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Benchmarks: Slack's per-conversation pace and a 429 storm (see the module docstring).
    pace: Pace | None = None
    storm: Storm | None = None
    over_limit: int = 0  # chat.postMessage calls refused by `pace`
    stormed: int = 0  # chat.postMessage calls refused by `storm`
    # Handoff cards posted: (conversation, lead id) → how many times, and when each arrived.
    handoffs: Counter[tuple[str, int]] = field(default_factory=Counter)
    handoff_at: list[float] = field(default_factory=list)
    # Channels that exist, and whether the bot is in each: one not in it answers
    # `not_in_channel` to posts and history. Channels not named here exist with the bot in
    # them as soon as something is posted there (history of one never posted to: not found).
    channels: dict[str, bool] = field(default_factory=dict)
    # The client end (host, port) of the TCP connection each Web API call came on.
    peers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.url}/response/{name}"

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def trigger_id(self, age: float = 0.0) -> str:
        """A trigger id as Slack puts in a slash command or a click, minted `age` seconds
        ago (it opens a view within 3 seconds of minting, once)."""
        minted = f"{next(self._ts)}.{int(time.time() * 1000)}.{uuid.uuid4().hex[:20]}"
        self._triggers[minted] = time.monotonic() - age
        return minted

    def fail(self, method: str, *, times: int, error: str = "internal_error") -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        self._failing[method] = [error] * times

    def add_user(self, user_id: str, name: str, email: str, tz: str = "Europe/London") -> None:
        self.users[user_id] = {
            "id": user_id,
            "name": name.split()[0].lower(),
            "real_name": name,
            "tz": tz,
            "profile": {"email": email, "real_name": name},
        }

    @web.middleware
    async def _scopes_header(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Slack names the token's scopes on every Web API answer (`x-oauth-scopes`)."""
        if request.path.startswith("/api/") and request.transport is not None:
            self.peers.append(request.transport.get_extra_info("peername")[:2])
        response: web.StreamResponse = await handler(request)
        if request.path.startswith("/api/"):
            response.headers["x-oauth-scopes"] = ",".join(sorted(self.scopes))
        return response

    async def start(self) -> SlackStandIn:
        app = web.Application(middlewares=[self._scopes_header])
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link/", self._link)
        self._runner, self.url = await serve_on_loopback(app)
        return self

    def posted_in(self, channel: str) -> list[dict[str, Any]]:
        """The messages in a conversation (a user id means their DM), thread replies too."""
        if channel.startswith("U"):
            channel = "D" + channel[1:]
        return list(self.messages.get(channel, []))

    async def stop(self) -> None:
        self._stopping.set()
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # Socket Mode: Slack's side of the WebSocket.

    def _open_connection(self, request: web.Request) -> dict[str, Any]:
        """`apps.connections.open`: only an app-level token (xapp-…) gets a URL."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        ws_url = self.url.replace("http://", "ws://", 1)
        return {"ok": True, "url": f"{ws_url}/link/?ticket={ticket}"}

    async def _link(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        socket = web.WebSocketResponse()  # answers the client's pings itself
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {
                    "host": "applink-standin",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": "A0CA5"},
            }
        )
        try:
            async for message in socket:
                if message.type == web.WSMsgType.TEXT:
                    self.socket_messages.append(json.loads(message.data))
        finally:
            self._sockets.remove(socket)
        return socket

    @property
    def socket_open(self) -> bool:
        """Whether an app holds an open Socket Mode connection."""
        return any(not s.closed for s in self._sockets)

    async def wait_for_socket(self, timeout: float = 10.0) -> None:
        """Until the app holds an open Socket Mode connection (bounded)."""
        deadline = time.monotonic() + timeout
        while not self.socket_open:
            if time.monotonic() > deadline:
                raise AssertionError("no Socket Mode connection within timeout")
            await asyncio.sleep(0.05)

    async def push(
        self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = True
    ) -> str:
        """Send an envelope (`slash_commands`, `interactive`, `events_api`) to the app over
        the open connection; returns its envelope_id."""
        await self.wait_for_socket()
        envelope_id = str(uuid.uuid4())
        socket = next(s for s in reversed(self._sockets) if not s.closed)
        await socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": accepts_response_payload,
                "payload": payload,
            }
        )
        return envelope_id

    def ack_for(self, envelope_id: str) -> dict[str, Any] | None:
        """The app's acknowledgement of an envelope, once it has sent one."""
        return next((m for m in self.socket_messages if m.get("envelope_id") == envelope_id), None)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query)
        elif request.content_type == "application/json":
            params = json.loads(raw) if raw else {}
        else:
            params = {k: v[0] for k, v in parse_qs(raw).items()}
        # slack_sdk sends some methods' arguments (files.completeUploadExternal) in the URL.
        params = {**dict(request.query), **params}
        for key in ("blocks", "view"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _response(self, request: web.Request) -> web.Response:
        """A response_url: no token, but the same Block Kit limits (a 400 `invalid_blocks`)."""
        params = await self._params(request)
        if "blocks" in params and block_errors(params["blocks"]):
            self.refused.append(Call("response_url", params))
            return web.Response(status=400, text="invalid_blocks")
        self.calls.append(Call("response_url", params))
        return web.Response(text="ok")

    def throttle(self, method: str, *, times: int, retry_after: int) -> None:
        """Answer the next `times` calls of `method` with 429 and `Retry-After`."""
        self._throttled[method] = (times, retry_after)

    def throttle_channel(self, channel: str, *, times: int, retry_after: int) -> None:
        """Answer the next `times` posts to `channel` (a user id: their DM) with 429."""
        self._throttled[f"chat.postMessage:{channel}"] = (times, retry_after)

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL files.getUploadURLExternal handed out: the file's bytes."""
        file_id = request.match_info["file_id"]
        if file_id not in self.files:
            return web.Response(status=404, text="unknown upload")
        self.files[file_id]["bytes"] = await request.read()
        return web.Response(text="OK - uploaded")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        if self.down:
            self.refused.append(Call(method, params))
            return web.json_response({"ok": False, "error": "fatal_error"}, status=500)
        throttled = method
        if method == "chat.postMessage" and f"{method}:{params.get('channel')}" in self._throttled:
            throttled = f"{method}:{params.get('channel')}"
        left, retry_after = self._throttled.get(throttled, (0, 0))
        if left > 0:
            self._throttled[throttled] = (left - 1, retry_after)
            self.refused.append(Call(method, params))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        if method == "apps.connections.open":
            self.calls.append(Call(method, params))
            return web.json_response(self._open_connection(request))
        if method == "chat.postMessage" and self.storm and self.storm.strikes(time.monotonic()):
            self.stormed += 1
            return self._ratelimited(method, params, self.storm.retry_after)
        refusal = self._refusal(method, params, request)
        if refusal is not None:
            self.refused.append(Call(method, params))
            log.warning("Slack stand-in refused %s: %s", method, refusal)
            return web.json_response(refusal)
        if method == "chat.postMessage" and self.pace is not None:
            wait = self.pace.take(self._conversation(params), time.monotonic())
            if wait > 0:
                self.over_limit += 1
                return self._ratelimited(method, params, max(1, math.ceil(wait)))
        call = Call(method, params)
        self.calls.append(call)
        if method == "chat.postMessage" and self.hang_posts > 0:
            self.hang_posts -= 1
            await self._stopping.wait()
            return web.json_response({"ok": False, "error": "fatal_error"}, status=500)
        call.answer = self.answer(method, params)
        if method == "chat.postMessage" and self.post_delay > 0:
            await asyncio.sleep(self.post_delay)  # posted already; the answer comes late
        return web.json_response(call.answer)

    def _ratelimited(self, method: str, params: dict[str, Any], retry_after: int) -> web.Response:
        self.refused.append(Call(method, params))
        return web.json_response(
            {"ok": False, "error": "ratelimited"},
            status=429,
            headers={"Retry-After": str(retry_after)},
        )

    @staticmethod
    def _conversation(params: dict[str, Any]) -> str:
        """Where a post lands: a user id means their DM (D…)."""
        channel = str(params.get("channel", ""))
        return "D" + channel[1:] if channel.startswith("U") else channel

    def _refusal(
        self, method: str, params: dict[str, Any], request: web.Request
    ) -> dict[str, Any] | None:
        """Slack's answer when it would refuse the call, else None."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        token = token or str(params.get("token", ""))
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if method not in METHOD_SCOPES:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        missing = [s for s in METHOD_SCOPES[method] if s not in self.scopes]
        if missing:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": ",".join(missing),
                "provided": ",".join(sorted(self.scopes)),
            }
        channel = str(params.get("channel", ""))
        if self.channels.get(channel) is False and method in CHANNEL_METHODS:
            return {"ok": False, "error": "not_in_channel"}
        refused_here = self.refusing.get(channel)
        if method == "chat.postMessage" and refused_here:
            return {"ok": False, "error": refused_here}
        failing = self._failing.get(method)
        if failing:
            return {"ok": False, "error": failing.pop()}
        return self._invalid(method, params)

    def _invalid(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """Arguments Slack refuses: limits, stale triggers, messages that are not ours."""
        if method in BLOCK_METHODS:
            errors = block_errors(params["blocks"]) if "blocks" in params else []
            if errors:
                return {
                    "ok": False,
                    "error": "invalid_blocks",
                    "errors": errors,
                    "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
                }
            if len(str(params.get("text", ""))) > TEXT_LIMIT:
                return {"ok": False, "error": "msg_too_long"}
            if not params.get("text") and not params.get("blocks"):
                return {"ok": False, "error": "no_text"}
            channel = str(params.get("channel", ""))
            if not channel.startswith(CHANNEL_ID + (("U",) if method != "chat.update" else ())):
                return {"ok": False, "error": "channel_not_found"}
        if method == "chat.update":
            posted_in = self.channel_of_ts.get(str(params.get("ts", "")))
            if posted_in is None:
                return {"ok": False, "error": "message_not_found"}
            if posted_in != params.get("channel"):
                return {"ok": False, "error": "cant_update_message"}
        if method in ("views.open", "views.publish"):
            view = params.get("view")
            errors = view_errors(view)
            if errors:
                return {
                    "ok": False,
                    "error": "invalid_arguments",
                    "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
                }
        if method == "views.open":
            return self._trigger_refusal(str(params.get("trigger_id", "")))
        return None

    def _trigger_refusal(self, trigger_id: str) -> dict[str, Any] | None:
        minted = self._triggers.get(trigger_id)
        if minted is None:
            return {
                "ok": False,
                "error": "invalid_arguments",
                "response_metadata": {"messages": ["invalid `trigger_id`"]},
            }
        if trigger_id in self._exchanged:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if time.monotonic() - minted > TRIGGER_TTL:
            return {"ok": False, "error": "expired_trigger_id"}
        self._exchanged.add(trigger_id)  # a trigger opens one view
        return None

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "Example",
                "user": "liaison",
                "team_id": "T0CAG",
                "user_id": "U0BOT",
                "bot_id": "B0CA7",
            }
        if method == "chat.postMessage":
            channel = self._conversation(params)
            ts = f"1700000000.{next(self._ts):06d}"
            self.channel_of_ts[ts] = channel
            message = {"ts": ts, "text": params.get("text", "")}
            if params.get("blocks"):
                message["blocks"] = params["blocks"]  # as Slack keeps them (and shows them)
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            if params.get("metadata"):
                metadata = params["metadata"]
                message["metadata"] = (
                    json.loads(metadata) if isinstance(metadata, str) else metadata
                )
            self.messages.setdefault(channel, []).append(message)
            lead = handoff_lead(message)
            if lead is not None and not params.get("thread_ts"):
                self.handoffs[(channel, lead)] += 1
                self.handoff_at.append(time.monotonic())
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "conversations.open":
            invited = str(params.get("users", ""))
            return {"ok": True, "channel": {"id": "D" + invited[1:]}}
        if method in ("conversations.history", "conversations.replies"):
            return self._history(method, params)
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):04d}"
            self.files[file_id] = {"filename": params.get("filename"), "bytes": b""}
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            listed = params.get("files")
            listed = json.loads(listed) if isinstance(listed, str) else listed or []
            for entry in listed:
                self.files.get(entry["id"], {}).update(
                    title=entry.get("title"), channel=params.get("channel_id")
                )
            return {"ok": True, "files": [{"id": entry["id"]} for entry in listed]}
        if method == "views.publish":
            return {"ok": True, "view": {"id": f"V{next(self._ts):04d}", **params["view"]}}
        if method == "views.open":
            return {"ok": True, "view": {"id": f"V{next(self._ts):04d}", **params["view"]}}
        if method == "users.lookupByEmail":
            for user in self.users.values():
                if user["profile"]["email"] == params.get("email"):
                    return {"ok": True, "user": user}
            return {"ok": False, "error": "users_not_found"}
        if method == "users.info":
            known = self.users.get(str(params.get("user")))
            if known is None:
                return {"ok": False, "error": "user_not_found"}
            if "users:read.email" not in self.scopes:  # the email needs its own scope
                profile = {k: v for k, v in known["profile"].items() if k != "email"}
                known = {**known, "profile": profile}
            return {"ok": True, "user": known}
        return {"ok": False, "error": "unknown_method"}

    def _history(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A conversation's messages newest first (history: top level only; replies: one
        thread), with metadata only when `include_all_metadata` is asked for."""
        channel = str(params.get("channel", ""))
        known = channel in self.messages or channel in self.channels
        if not known and not channel.startswith("D"):
            return {"ok": False, "error": "channel_not_found"}
        thread = params.get("ts")
        found = [
            m
            for m in self.messages.get(channel, [])
            if (m.get("thread_ts") == thread or m["ts"] == thread)
            if method == "conversations.replies" or "thread_ts" not in m
        ]
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [
            m if with_metadata else {k: v for k, v in m.items() if k != "metadata"}
            for m in reversed(found)
        ]
        return {"ok": True, "messages": shown, "has_more": False}
