"""Bodies of the wrong shape on the chat endpoints: correctly signed (Slack) or well-formed
enough to reach the adapter (Teams), they get a 400 with a JSON error naming the problem,
never a 500, and nothing is recorded. Last, a property test throws random bodies at both
live endpoints."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar, get_args
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, func, select

from bot.core.jsonlimits import loads_bounded, nesting_depth
from bot.slack.shapes import EVENTS
from storage.db import Store
from tests.slack_standin import SlackStandIn
from tests.support import (
    LiveServer,
    fixture,
    make_settings,
    slack_settings,
    slack_with,
    teams_settings,
)
from tests.teams_standin import TeamsStandIn, connector_with
from tests.test_slack import SIGNING_SECRET, slack_headers
from tests.test_teams import ALICE

T = TypeVar("T")
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def counts(store: Store) -> dict[str, int]:
    """Rows in every table (a refused request writes none, not even its request id)."""
    with store.session() as session:
        return {
            table.name: session.exec(select(func.count()).select_from(table)).one()
            for table in SQLModel.metadata.sorted_tables
        }


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def form_payload(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


# ---------------------------------------------------------------- the bounded parser


def test_loads_bounded_counts_depth_without_recursing() -> None:
    assert loads_bounded(b'{"a": [1, {"b": "[[[[ {{ \\" ]]"}]}') == {
        "a": [1, {"b": '[[[[ {{ " ]]'}]
    }
    assert nesting_depth(nested(64)) == 64 and loads_bounded(nested(64), max_depth=64)
    for body, words in [
        (nested(100_000).encode(), "nested 100000 deep"),
        (nested(65), "at most 64"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{x", "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),
    ]:
        with pytest.raises(ValueError, match=words):
            loads_bounded(body)


# ---------------------------------------------------------------- Slack


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await slack_with("alice")
    yield standin
    await standin.stop()


@pytest.fixture
async def server(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = slack_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        slack,
    )
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


def _actions() -> dict[str, Any]:
    payload = fixture("slack", "block_actions")
    payload["user"]["id"] = "U0ALICE"
    return payload


def _view() -> dict[str, Any]:
    payload = fixture("slack", "view_submission")
    payload["user"]["id"] = "U0ALICE"
    payload["view"]["private_metadata"] = json.dumps({"lead_id": "1", "nonce": "n"})
    return payload


def _command(**changes: str | None) -> bytes:
    form = fixture("slack", "slash_command")
    form.update(command="/insight", user_id="U0ALICE", text="")
    form.update(changes)
    return urlencode({k: v for k, v in form.items() if v is not None}).encode()


def _with(payload: dict[str, Any], path: str, value: Any) -> bytes:
    """The payload with the field at `path` (dots) set to `value`, or removed (`...`)."""
    changed = copy.deepcopy(payload)
    *parents, last = path.split(".")
    here = changed
    for part in parents:
        here = here[part]
    if value is ...:
        del here[last]
    else:
        here[last] = value
    return form_payload(changed)


ODD_SHAPES: list[tuple[str, bytes, str, str]] = [
    ("view is a string", _with(_view(), "view", "x"), FORM, "view"),
    ("actions=[1]", _with(_actions(), "actions", [1]), FORM, "actions.0"),
    ("actions=[{}]", _with(_actions(), "actions", [{}]), FORM, "action_id"),
    ("actions=[]", _with(_actions(), "actions", []), FORM, "actions"),
    ("user missing", _with(_actions(), "user", ...), FORM, "user"),
    ("user is a string", _with(_view(), "user", "U0ALICE"), FORM, "user"),
    ("state.values a list", _with(_view(), "view.state.values", [1]), FORM, "values"),
    (
        "a select without options",
        _with(_view(), "view.state.values", {"kind": {"kind": {"selected_options": "x"}}}),
        FORM,
        "selected_options",
    ),
    ("metadata not JSON", _with(_view(), "view.private_metadata", "{nope"), FORM, "metadata"),
    ("metadata a list", _with(_view(), "view.private_metadata", "[1]"), FORM, "metadata"),
    ("team a list", _with(_actions(), "team", ["T0CAG"]), FORM, "team"),
    ("team a number", _with(_view(), "team", 7), FORM, "team"),
    ("enterprise a number", _with(_actions(), "enterprise", 7), FORM, "enterprise"),
    ("authorizations of numbers", _with(_actions(), "authorizations", [1]), FORM, "auth"),
    ("trigger_id missing on a button", _with(_actions(), "trigger_id", ...), FORM, "trigger_id"),
    ("action_id a number", _with(_actions(), "actions", [{"action_id": 5}]), FORM, "action_id"),
    ("callback_id missing", _with(_view(), "view.callback_id", ...), FORM, "callback_id"),
    ("slash command without user_id", _command(user_id=None), FORM, "user_id"),
    ("slash command without trigger_id", _command(trigger_id=None), FORM, "trigger_id"),
    ("slash command that is no command", _command(command="insight"), FORM, "command"),
    (
        "event a string",
        json.dumps({**fixture("slack", "event_message_im"), "event": "x"}).encode(),
        JSON,
        "event",
    ),
    (
        "message event without its user",
        json.dumps(
            {
                **fixture("slack", "event_message_im"),
                "event": {"type": "message", "channel": "D1", "ts": "1.2", "channel_type": "im"},
            }
        ).encode(),
        JSON,
        "user",
    ),
    (
        "an event Liaison never subscribed to",
        json.dumps(
            {**fixture("slack", "event_message_im"), "event": {"type": "assistant_thread_started"}}
        ).encode(),
        JSON,
        "event",
    ),
    ("interaction of an unknown type", form_payload({"type": "shortcut"}), FORM, "type"),
    ("JSON nested 1,000 deep", nested(1000).encode(), JSON, "nested"),
    (
        "an event nested 5,000 deep",
        b'{"type": "event_callback", "event": ' + nested(5000).encode() + b"}",
        JSON,
        "nested",
    ),
    ("form payload nested 1,000 deep", b"payload=" + nested(1000).encode(), FORM, "nested"),
]


@pytest.mark.parametrize(
    "body,content_type,named", [c[1:] for c in ODD_SHAPES], ids=[c[0] for c in ODD_SHAPES]
)
async def test_odd_slack_shapes_get_a_400_naming_the_problem(
    server: LiveServer, slack: SlackStandIn, body: bytes, content_type: str, named: str
) -> None:
    before = counts(server.store)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/slack/events", data=body, headers=slack_headers(body, content_type)
        ) as response,
    ):
        assert response.status == 400, await response.text()
        error = (await response.json())["error"]
    await server.settle()
    assert named in error
    assert counts(server.store) == before
    assert not slack.calls  # nobody was looked up, nothing was said


async def test_well_shaped_requests_still_pass_the_guard(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """The fixtures of every kind Liaison takes are not refused (a url_verification is
    answered with its challenge)."""
    cases = [
        (json.dumps({"type": "url_verification", "challenge": "c0"}).encode(), JSON),
        (json.dumps(fixture("slack", "event_message_im")).encode(), JSON),
        (json.dumps(fixture("slack", "event_app_home_opened")).encode(), JSON),
        (_command(), FORM),
        (form_payload(_actions()), FORM),
    ]
    async with aiohttp.ClientSession() as http:
        for body, content_type in cases:
            async with http.post(
                f"{server.url}/slack/events", data=body, headers=slack_headers(body, content_type)
            ) as response:
                assert response.status == 200, (body, await response.text())
    await server.settle()


# ---------------------------------------------------------------- Teams


@pytest.fixture
async def teams_standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with((ALICE,))
    yield connector
    await connector.stop()


@pytest.fixture
async def teams_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    live = await LiveServer(teams_settings(f"sqlite:///{tmp_path / 'teams.db'}")).start()
    yield live
    await live.stop()


def _activity(standin: TeamsStandIn) -> dict[str, Any]:
    activity = fixture("teams", "personal_message")
    activity.update(serviceUrl=standin.service_url)
    activity["from"]["id"] = ALICE.user_id
    activity["conversation"]["id"] = ALICE.conversation
    return activity


async def test_deeply_nested_teams_activities_get_a_400(
    teams_server: LiveServer, teams_standin: TeamsStandIn
) -> None:
    activity = _activity(teams_standin)
    deep_value = json.dumps(activity)[:-1] + ', "value": ' + nested(1000) + "}"
    before = counts(teams_server.store)
    async with aiohttp.ClientSession() as http:
        for body in (nested(1000), deep_value, nested(100_000)):
            async with http.post(
                f"{teams_server.url}/api/messages",
                data=body.encode(),
                headers={"Content-Type": JSON},
            ) as response:
                assert response.status == 400
                assert "nested" in (await response.json())["error"]
    await teams_server.settle()
    assert counts(teams_server.store) == before
    assert not teams_standin.calls


# ---------------------------------------------------------------- random bodies


class Background:
    """A live server (and its stand-in) on an event loop of their own, for a synchronous
    property test: the test posts with plain HTTP and waits for the work each request
    started."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _nested_in(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    _nested_in,
    max_leaves=20,
)


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with one field, at any depth, replaced by a random JSON value or removed."""
    paths: list[tuple[str, ...]] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                paths.append((*path, key))
                walk(inner, (*path, key))

    walk(base, ())

    def apply(path: tuple[str, ...], value: Any, remove: bool) -> dict[str, Any]:
        changed = copy.deepcopy(base)
        here = changed
        for part in path[:-1]:
            here = here[part]
        if remove:
            del here[path[-1]]
        else:
            here[path[-1]] = value
        return changed

    return st.builds(apply, st.sampled_from(paths), JSON_VALUES, st.booleans())


def slack_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    payloads = st.one_of(
        mutated(_actions()),
        mutated(_view()),
        mutated(fixture("slack", "event_message_im")),
        mutated(fixture("slack", "event_app_home_opened")),
    )
    command = fixture("slack", "slash_command")
    forms = st.dictionaries(
        st.sampled_from([*command, "payload", "ssl_check"]) | st.text(max_size=8),
        st.text(max_size=30),
        max_size=8,
    )
    return st.one_of(
        payloads.map(lambda p: (form_payload(p), FORM)),
        payloads.map(lambda p: (json.dumps(p).encode(), JSON)),
        JSON_VALUES.map(lambda v: (json.dumps(v).encode(), JSON)),
        JSON_VALUES.map(lambda v: (form_payload(v), FORM)),
        forms.map(lambda f: (urlencode(f).encode(), FORM)),
        st.integers(1, 3000).map(lambda n: (nested(n).encode(), JSON)),
        st.integers(1, 3000).map(lambda n: (b"payload=" + nested(n).encode(), FORM)),
        st.binary(max_size=200).map(lambda b: (b, JSON)),
    )


@pytest.fixture
def live_slack(tmp_path: Path) -> Iterator[tuple[Background, LiveServer]]:
    background = Background()
    standin = background.run(SlackStandIn().start())
    standin.add_user("U045VRZFT", "Rae Rivers", "rae@example.com")
    settings = make_settings(
        f"sqlite:///{tmp_path / 'property.db'}",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url,
    )
    server = background.run(LiveServer(settings).start())
    yield background, server
    background.run(server.stop())
    background.run(standin.stop())
    background.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=slack_bodies())
def test_random_signed_slack_bodies_never_get_a_5xx(
    live_slack: tuple[Background, LiveServer], case: tuple[bytes, str]
) -> None:
    background, server = live_slack
    body, content_type = case
    before = counts(server.store)
    status = post(f"{server.url}/slack/events", body, slack_headers(body, content_type))
    background.run(server.settle())
    assert status < 500, body[:300]
    if 400 <= status < 500:
        assert counts(server.store) == before, body[:300]


def teams_bodies(service_url: str) -> st.SearchStrategy[bytes]:
    base = fixture("teams", "personal_message")
    base.update(serviceUrl=service_url)
    base["from"]["id"] = ALICE.user_id
    base["conversation"]["id"] = ALICE.conversation
    submit = fixture("teams", "card_submit")
    submit.update(serviceUrl=service_url)
    submit["from"]["id"] = ALICE.user_id
    submit["conversation"]["id"] = ALICE.conversation
    return st.one_of(
        mutated(base).map(lambda a: json.dumps(a).encode()),
        mutated(submit).map(lambda a: json.dumps(a).encode()),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.integers(1, 3000).map(lambda n: nested(n).encode()),
        st.binary(max_size=200),
    )


@pytest.fixture
def live_teams(tmp_path: Path) -> Iterator[tuple[Background, LiveServer, TeamsStandIn]]:
    background = Background()
    standin = background.run(connector_with((ALICE,)))
    server = background.run(LiveServer(teams_settings(f"sqlite:///{tmp_path / 't.db'}")).start())
    yield background, server, standin
    background.run(server.stop())
    background.run(standin.stop())
    background.close()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_teams_bodies_never_get_a_5xx(
    live_teams: tuple[Background, LiveServer, TeamsStandIn], data: st.DataObject
) -> None:
    background, server, standin = live_teams
    body = data.draw(teams_bodies(standin.service_url))
    before = counts(server.store)
    status = post(f"{server.url}/api/messages", body, {"Content-Type": JSON})
    background.run(server.settle())
    assert status < 500, body[:300]
    if 400 <= status < 500:
        assert counts(server.store) == before, body[:300]


def test_the_guard_takes_every_event_the_manifest_subscribes_to() -> None:
    """A subscription added to the manifest without its model would be refused with a 400."""
    manifest = yaml.safe_load((Path(__file__).parents[1] / "manifests/slack.yaml").read_text())
    subscribed = {
        e.split(".")[0] for e in manifest["settings"]["event_subscriptions"]["bot_events"]
    }
    modelled = {get_args(model.model_fields["type"].annotation)[0] for model in EVENTS}
    assert subscribed == modelled


async def test_a_slash_command_that_says_payload_reaches_liaison(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """Bolt's own parser reads any form body containing "payload" as an interaction and,
    finding none, as an empty request (a 404); Bolt is handed the body the guard read."""
    body = _command(
        text="payload limits of the API",
        response_url=slack.response_url("p"),
        trigger_id=slack.trigger_id(),
    )
    status, _ = await post_slack_body(server, body, FORM)
    await server.settle()
    assert status == 200
    (opened,) = slack.of("views.open")
    assert "payload limits of the API" in json.dumps(opened["view"])


async def post_slack_body(server: LiveServer, body: bytes, content_type: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/slack/events", data=body, headers=slack_headers(body, content_type)
        ) as response,
    ):
        return response.status, await response.text()
