"""A local stand-in for the Slack Web API (and response_url), recording every call."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.loopback import serve_on_loopback


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class SlackStandIn:
    """Answers the Web API methods Liaison uses; `users` maps user id → users.info user."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.url}/response/{name}"

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def add_user(self, user_id: str, name: str, email: str, tz: str = "Europe/London") -> None:
        self.users[user_id] = {
            "id": user_id,
            "name": name.split()[0].lower(),
            "real_name": name,
            "tz": tz,
            "profile": {"email": email, "real_name": name},
        }

    async def start(self) -> SlackStandIn:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        self._runner, self.url = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query)
        elif request.content_type == "application/json":
            params = json.loads(raw) if raw else {}
        else:
            params = {k: v[0] for k, v in parse_qs(raw).items()}
        for key in ("blocks", "view"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _response(self, request: web.Request) -> web.Response:
        self.calls.append(Call("response_url", await self._params(request)))
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(Call(method, params))
        return web.json_response(self.answer(method, params))

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
            channel = str(params.get("channel", ""))
            if channel.startswith("U"):
                channel = "D" + channel[1:]
            return {
                "ok": True,
                "channel": channel,
                "ts": f"1700000000.{next(self._ts):06d}",
                "message": {"text": params.get("text", "")},
            }
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "views.open":
            return {"ok": True, "view": {"id": f"V{next(self._ts):04d}", **params["view"]}}
        if method == "users.lookupByEmail":
            for user in self.users.values():
                if user["profile"]["email"] == params.get("email"):
                    return {"ok": True, "user": user}
            return {"ok": False, "error": "users_not_found"}
        if method == "users.info":
            user = self.users.get(str(params.get("user")))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        return {"ok": False, "error": "unknown_method"}
