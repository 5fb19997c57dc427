"""A local stand-in for the Bot Framework connector (Teams' serviceUrl), recording every call."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.loopback import serve_on_loopback

FIXTURES = Path(__file__).parent / "fixtures" / "teams"
PREFIX = "/teams"  # like Teams' own service URLs (https://smba.trafficmanager.net/amer/)


@dataclass
class Call:
    """One connector request: `verb` is send, reply, update, member, members or create;
    refused (403) or throttled for a send answered with an error instead (see `status`)."""

    verb: str
    conversation: str
    activity_id: str = ""
    body: Any = None
    answered_id: str = ""
    status: int = 200  # the HTTP status the stand-in answered with

    @property
    def card(self) -> dict[str, Any]:
        """The Adaptive Card of a sent or updated activity."""
        attachments = (self.body or {}).get("attachments") or [{}]
        content: dict[str, Any] = attachments[0].get("content") or {}
        return content


@dataclass
class TeamsStandIn:
    """Answers the connector operations Liaison uses; `members` maps user id → member JSON.

    As strict as the real connector: a conversation it does not know (`conversations`:
    every member's personal chat, plus channels added with `add_conversation`) answers
    404, and so does an update of an activity it never created. Anything it refused is
    recorded with the verb "unknown" and the status.
    """

    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    uninstalled: set[str] = field(default_factory=set)  # conversations that answer 403
    conversations: set[str] = field(default_factory=set)
    created: dict[str, str] = field(default_factory=dict)  # activity id → its conversation
    # When the bot has credentials: whether a bearer token is one Microsoft's token service
    # issued (every call without one answers 401, recorded as "unauthorized").
    token_valid: Callable[[str], bool] | None = None
    _failures: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1700000000001))
    _runner: web.AppRunner | None = None
    # Seconds a send waits before it is answered (a slow connector).
    send_delay: float = 0.0
    # The client end (host, port) of the TCP connection each request came on.
    peers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def service_url(self) -> str:
        return f"{self.url}{PREFIX}/"

    def add_conversation(self, conversation: str) -> None:
        """A channel or chat the bot is installed in."""
        self.conversations.add(conversation)

    def add_member(
        self,
        user_id: str,
        given: str,
        surname: str,
        email: str,
        template: dict[str, Any],
        conversation: str | None = None,
    ) -> None:
        """A member for the lookup, shaped like `template` (a real member-lookup answer),
        with their personal chat with the bot (`conversation`)."""
        if conversation is not None:
            self.conversations.add(conversation)
        self.members[user_id] = {
            **template,
            "id": user_id,
            "givenName": given,
            "surname": surname,
            "email": email,
            "userPrincipalName": email,
        }

    def fail_sends(
        self,
        times: int,
        status: int = 429,
        retry_after: str | None = None,
        page: str | None = None,
    ) -> None:
        """Answer the next `times` sends (and replies) with `status` instead of posting.

        Teams answers 429 when a bot goes over its rate limits, with or without a
        Retry-After header; 412, 502 and 504 are its other transient answers. The body is
        a JSON error, or `page` as text/html (what a gateway in front answers). Refused
        sends are recorded with the verb "throttled" and the status given.
        """
        self._failures += [(status, retry_after, page)] * times

    def of(self, verb: str, conversation: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.verb == verb and (conversation is None or c.conversation == conversation)
        ]

    async def start(self, host: str = "127.0.0.1") -> TeamsStandIn:
        """Serve on a free port of `host` (loopback unless a test needs another address)."""
        app = web.Application(middlewares=[self._strict])
        base = f"{PREFIX}/v3/conversations"
        app.router.add_post(base, self._create)
        app.router.add_post(base + "/{conversation}/activities", self._send)
        app.router.add_post(base + "/{conversation}/activities/{activity}", self._send)
        app.router.add_put(base + "/{conversation}/activities/{activity}", self._update)
        app.router.add_get(base + "/{conversation}/members", self._members)
        app.router.add_get(base + "/{conversation}/members/{member}", self._member)
        if host == "127.0.0.1":
            self._runner, self.url = await serve_on_loopback(app)
            return self
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}"
        return self

    @web.middleware
    async def _strict(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Refuse what the real connector refuses before any operation runs."""
        if request.transport is not None:
            self.peers.append(request.transport.get_extra_info("peername")[:2])
        conversation = request.match_info.get("conversation")
        activity = request.match_info.get("activity", "")
        if self.token_valid is not None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or not self.token_valid(token):
                body = await request.json() if request.can_read_body else None
                self.calls.append(
                    Call("unauthorized", conversation or "", activity, body, status=401)
                )
                error = {"code": "Unauthorized", "message": "Authorization has been denied."}
                return web.json_response({"error": error}, status=401)
        unknown = None
        if conversation is not None and conversation not in self.conversations:
            unknown = ("ConversationNotFound", "Conversation not found.")
        elif request.method == "PUT" and self.created.get(activity) != conversation:
            unknown = ("ActivityNotFoundInConversation", "Activity not found.")
        if unknown is None:
            response: web.StreamResponse = await handler(request)
            return response
        body = await request.json() if request.can_read_body else None
        self.calls.append(Call("unknown", conversation or "", activity, body, status=404))
        code, text = unknown
        return web.json_response({"error": {"code": code, "message": text}}, status=404)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _next_id(self) -> str:
        return str(next(self._ids))

    async def _send(self, request: web.Request) -> web.Response:
        reply_to = request.match_info.get("activity", "")
        conversation = request.match_info["conversation"]
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if self._failures:
            status, retry_after, page = self._failures.pop(0)
            body = await request.json()
            self.calls.append(Call("throttled", conversation, reply_to, body, status=status))
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            if page is not None:
                return web.Response(
                    text=page, status=status, headers=headers, content_type="text/html"
                )
            error = {"code": "Throttled" if status == 429 else "ServiceError", "message": "Retry"}
            return web.json_response({"error": error}, status=status, headers=headers)
        if conversation in self.uninstalled:
            self.calls.append(
                Call("refused", conversation, reply_to, await request.json(), status=403)
            )
            error = {
                "code": "BotNotInConversationRoster",
                "message": "The bot is not part of the conversation roster.",
            }
            return web.json_response({"error": error}, status=403)
        new_id = self._next_id()
        self.created[new_id] = conversation
        self.calls.append(
            Call(
                "reply" if reply_to else "send",
                conversation,
                reply_to,
                await request.json(),
                new_id,
            )
        )
        return web.json_response({"id": new_id})

    async def _update(self, request: web.Request) -> web.Response:
        activity_id = request.match_info["activity"]
        self.calls.append(
            Call(
                "update",
                request.match_info["conversation"],
                activity_id,
                await request.json(),
                activity_id,
            )
        )
        return web.json_response({"id": activity_id})

    async def _member(self, request: web.Request) -> web.Response:
        member_id = request.match_info["member"]
        self.calls.append(Call("member", request.match_info["conversation"], member_id))
        if member_id not in self.members:
            error = {"code": "MemberNotFoundInConversation", "message": "Member not found"}
            return web.json_response({"error": error}, status=404)
        return web.json_response(self.members[member_id])

    async def _members(self, request: web.Request) -> web.Response:
        conversation = request.match_info["conversation"]
        self.calls.append(Call("members", conversation))
        if conversation in self.uninstalled:
            error = {
                "code": "BotNotInConversationRoster",
                "message": "The bot is not part of the conversation roster.",
            }
            return web.json_response({"error": error}, status=403)
        return web.json_response(list(self.members.values()))

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        conversation = f"a:created-{self._next_id()}"
        self.conversations.add(conversation)
        self.calls.append(Call("create", conversation, body=body))
        return web.Response(
            text=json.dumps({"id": conversation, "activityId": self._next_id()}),
            content_type="application/json",
            status=201,
        )


@dataclass(frozen=True)
class Person:
    """A Teams user in the tests: ids shaped like real AAD/Teams ids."""

    key: str
    given: str
    surname: str
    domain: str = "example.com"

    @property
    def name(self) -> str:
        return f"{self.given} {self.surname}"

    @property
    def email(self) -> str:
        return f"{self.key}@{self.domain}"

    @property
    def user_id(self) -> str:
        return f"29:1{self.key}-XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB39ATiQWA85gQ"

    @property
    def conversation(self) -> str:
        return f"a:1{self.key}-7I0kl9EkpE1O9PH5TWrzrLNwnWWcfrU7QZjKR0WSfOpzbf"


async def connector_with(people: Iterable[Person]) -> TeamsStandIn:
    """A started connector stand-in that knows `people` (member lookups answer for them,
    shaped like the real member-lookup answer in tests/fixtures/teams/member.json)."""
    template = json.loads((FIXTURES / "member.json").read_text())
    connector = await TeamsStandIn().start()
    for person in people:
        connector.add_member(
            person.user_id,
            person.given,
            person.surname,
            person.email,
            template,
            conversation=person.conversation,
        )
    return connector
