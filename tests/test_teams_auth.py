"""Who may reach Liaison through Teams: `/api/messages` only when Teams is configured,
every token problem a 401, identities bound only from trusted activities of the company's
tenant, and no call to a serviceUrl Microsoft did not hand out (issue 10, "Let in")."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from app import cli
from bot import teams
from bot.core.settings import TeamsMode, teams_mode
from bot.teams.trust import emulator_bind_problem, service_url_problem
from bot.web.server import platform_messengers
from storage import approvals as approval_store
from storage import channels
from storage import members as stored_members
from storage import tone as stored_tone
from storage.models import Lead, Member
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, fixture, make_settings, signed_lead_headers, teams_settings
from tests.teams_auth_standin import MicrosoftAuthStandIn
from tests.teams_standin import Person, TeamsStandIn, connector_with
from tests.test_teams import BOT_ID

APP_ID = "5a3c2f71-0d6e-4b8a-9c1e-7f2b3d4e5a6b"
TENANT = fixture("teams", "personal_message")["conversation"]["tenantId"]

ADA = Person("ada", "Ada", "Admin")  # the company's admin, on Slack
ALICE = Person("alice", "Alice", "Adams")  # a rep, on Slack
MALLORY = Person("mallory", "Mallory", "Made-Up", domain="evil.example")
MALLET = Person("mallet", "Mallet", "Made-Up", domain="evil.example")
BEA = Person("bea", "Bea", "Boss")  # a second admin
BOB_ELSEWHERE = Person("bob", "Bob", "Brown")


def now() -> datetime:
    return datetime.now(UTC)


def activity(name: str, person: Person, service_url: str, **fields: Any) -> dict[str, Any]:
    """An activity as Teams would send it from `person`, naming `service_url`."""
    body = copy.deepcopy(fixture("teams", name))
    body.update(id=f"f:{uuid.uuid4().hex}", serviceUrl=service_url)
    body["from"] = {**body["from"], "id": person.user_id, "name": person.name}
    body["conversation"]["id"] = person.conversation
    if "membersAdded" in body:
        body["membersAdded"] = [{"id": BOT_ID}, {"id": person.user_id}]
    body.update(fields)
    return body


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/messages", json=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


# ---------------------------------------------------------------- the takeover from the issue


def seed_company(server: LiveServer) -> None:
    """Ada (admin) and Alice (rep) on Slack, Ada approving both sides, one tone rule."""
    with server.store.session() as session:
        ada = stored_members.upsert_member(
            session, now=now(), email=ADA.email, name=ADA.name, slack_user_id="U0ADA", role="admin"
        )
        stored_members.upsert_member(
            session, now=now(), email=ALICE.email, name=ALICE.name, slack_user_id="U0ALICE"
        )
        for side in ("sales", "marketing"):
            approval_store.set_approvers(session, side=side, member_ids=[ada.id or 0])
        stored_tone.add_tone_rule(
            session,
            phrase="your fault",
            kind="blame",
            suggestion="Let's fix it",
            created_by="Ada",
            now=now(),
        )


async def hand_alice_a_lead(server: LiveServer) -> None:
    body = json.dumps(
        {"external_id": "L-1", "name": "Dana Diaz", "company": "Acme", "owner_email": ALICE.email}
    ).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/leads", data=body, headers=signed_lead_headers(body)
        ) as response,
    ):
        assert response.status == 200, await response.text()
    await server.settle()


def snapshot(server: LiveServer) -> dict[str, Any]:
    """Everything the attacker was after."""
    with server.store.session() as session:
        members = {
            m.email or f"#{m.id}": (m.role, m.slack_user_id, m.teams_user_id)
            for m in session.exec(select(Member)).all()
        }
        lead = session.exec(select(Lead).where(Lead.name == "Dana Diaz")).one()
        return {
            "members": members,
            "approvers": approval_store.approver_names(session),
            "tone": [r.phrase for r in stored_tone.tone_rules(session)],
            "lead": lead.state,
            "service": channels.get_setting(session, key=teams.SERVICE_KEY),
        }


async def attack(server: LiveServer, attacker: TeamsStandIn, lead_id: int) -> list[int]:
    """Mallory claims Ada's email and Mallet Alice's (the attacker's connector says so)."""
    template = json.loads((Path(__file__).parent / "fixtures/teams/member.json").read_text())
    attacker.add_member(MALLORY.user_id, "Ada", "Admin", ADA.email, template, MALLORY.conversation)
    attacker.add_member(
        MALLET.user_id, "Alice", "Adams", ALICE.email, template, MALLET.conversation
    )
    url = attacker.service_url
    steps = [
        activity("conversation_update_personal", MALLORY, url),
        activity(
            "personal_message",
            MALLORY,
            url,
            text=f"approvals set --sales {ALICE.email}",
        ),
        activity("personal_message", MALLORY, url, text="tone remove your fault"),
        activity("conversation_update_personal", MALLET, url),
        activity("personal_message", MALLET, url, text="leads"),
        activity(
            "card_submit",
            MALLET,
            url,
            value={"action": "lead.accept", "value": f"lead_id={lead_id}"},
        ),
    ]
    return [(await post(server.url, step))[0] for step in steps]


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    standin.add_user("U0ADA", ADA.name, ADA.email)
    standin.add_user("U0ALICE", ALICE.name, ALICE.email)
    yield standin
    await standin.stop()


async def test_a_slack_only_deployment_has_no_teams_endpoint_to_take_over(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_API_URL=slack.api_url,
        MICROSOFT_APP_ID="",
        MICROSOFT_APP_PASSWORD="",
    )
    assert settings.teams_mode is TeamsMode.off
    attacker = await TeamsStandIn().start()
    server = await LiveServer(settings).start()
    try:
        assert not [m for m in platform_messengers(settings, server.store) if m.platform == "teams"]
        seed_company(server)
        await hand_alice_a_lead(server)
        before = snapshot(server)
        lead_id = next(iter(queries_lead_ids(server)))
        statuses = await attack(server, attacker, lead_id)
        assert statuses == [404] * len(statuses)
        status, answer = await post(server.url, activity("personal_message", MALLORY, "x"))
        assert status == 404 and "Teams is not configured" in answer["error"]
        await server.settle()
        assert snapshot(server) == before
        assert before["lead"] == "handed_off" and before["service"] is None
        assert attacker.calls == []
    finally:
        await server.stop()
        await attacker.stop()


def queries_lead_ids(server: LiveServer) -> list[int]:
    with server.store.session() as session:
        return [lead.id or 0 for lead in session.exec(select(Lead)).all()]


async def test_emulator_mode_never_calls_a_service_url_off_this_machine(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to serve the attacker on")
    settings = teams_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_API_URL=slack.api_url,
    )
    assert settings.teams_mode is TeamsMode.emulator
    attacker = await TeamsStandIn().start(host=address)
    server = await LiveServer(settings).start()
    try:
        seed_company(server)
        await hand_alice_a_lead(server)
        before = snapshot(server)
        statuses = await attack(server, attacker, queries_lead_ids(server)[0])
        assert statuses == [403] * len(statuses)
        await server.settle()
        assert snapshot(server) == before
        assert attacker.calls == []
    finally:
        await server.stop()
        await attacker.stop()


# ---------------------------------------------------------------- tokens


def authenticated_settings(db_url: str, **overrides: str) -> Any:
    values = {
        "LIAISON_TEAMS_EMULATOR": "0",
        "MICROSOFT_APP_ID": APP_ID,
        "MICROSOFT_APP_PASSWORD": "not-a-real-secret",
        "MICROSOFT_APP_TENANT_ID": TENANT,
    }
    return teams_settings(db_url, **{**values, **overrides})


@pytest.fixture
async def standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with((ALICE, ADA))
    yield connector
    await connector.stop()


async def test_every_token_problem_is_a_401_with_no_side_effect(
    tmp_path: Path, standin: TeamsStandIn
) -> None:
    settings = authenticated_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        LIAISON_TEAMS_SERVICE_HOSTS="127.0.0.1",
    )
    assert settings.teams_mode is TeamsMode.authenticated
    server = await LiveServer(settings).start()
    try:
        headers: list[dict[str, str]] = [
            {},
            {"Authorization": "Bearer x"},
            {"Authorization": "Bearer a.b.c"},
            {"Authorization": "garbage"},
            {"Authorization": "Bearer " + "e30." * 3},
            {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"},
        ]
        for header in headers:
            for name in ("conversation_update_personal", "personal_message"):
                body = activity(name, ALICE, standin.service_url)
                status, answer = await post(server.url, body, header)
                assert status == 401, (header, status, answer)
                assert "token" in answer["error"]
        await server.settle()
        with server.store.session() as session:
            assert session.exec(select(Member)).all() == []
            assert channels.get_setting(session, key=teams.SERVICE_KEY) is None
        assert standin.calls == []
    finally:
        await server.stop()


def test_an_app_id_always_means_tokens_and_emulator_mode_is_explicit() -> None:
    assert teams_mode(app_id="", emulator=False) is TeamsMode.off
    assert teams_mode(app_id="  ", emulator=False) is TeamsMode.off
    assert teams_mode(app_id="", emulator=True) is TeamsMode.emulator
    assert teams_mode(app_id=APP_ID, emulator=True) is TeamsMode.authenticated
    settings = make_settings("sqlite://")
    assert settings.microsoft_app_type == "SingleTenant"
    assert settings.teams_mode is TeamsMode.off


def test_emulator_mode_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.teams"):
        teams.make_adapter(teams_settings("sqlite://"))
    assert any("UNAUTHENTICATED" in r.getMessage() for r in caplog.records)


runner = CliRunner()


def test_serve_refuses_emulator_mode_off_loopback(tmp_path: Path) -> None:
    env = {
        "LIAISON_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "LIAISON_TEAMS_EMULATOR": "1",
        "MICROSOFT_APP_ID": "",
        "SLACK_BOT_TOKEN": "",
    }
    for host in ("0.0.0.0", "192.0.2.2", "::", "example.com"):
        result = runner.invoke(cli, ["serve", "--host", host, "--port", "1"], env=env)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "LIAISON_TEAMS_EMULATOR" in lines[0] and host in lines[0]
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert emulator_bind_problem(TeamsMode.emulator, host) is None
    assert emulator_bind_problem(TeamsMode.authenticated, "0.0.0.0") is None


def test_credentials_that_cannot_authenticate_are_a_one_line_error(tmp_path: Path) -> None:
    env = {
        "LIAISON_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "MICROSOFT_APP_ID": APP_ID,
        "MICROSOFT_APP_PASSWORD": "secret",
        "MICROSOFT_APP_TENANT_ID": "",
        "MICROSOFT_APP_TYPE": "",
    }
    env.pop("MICROSOFT_APP_TYPE")
    result = runner.invoke(cli, ["members", "list"], env=env)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "MICROSOFT_APP_TENANT_ID is needed for a SingleTenant bot (see MICROSOFT_APP_TYPE)"
    )
    no_password = {**env, "MICROSOFT_APP_PASSWORD": "", "MICROSOFT_APP_TYPE": "MultiTenant"}
    result = runner.invoke(cli, ["members", "list"], env=no_password)
    assert result.exit_code == 2 and "MICROSOFT_APP_PASSWORD" in result.output


# ---------------------------------------------------------------- service URLs


def test_service_urls_microsoft_hands_out_and_no_others() -> None:
    authenticated = TeamsMode.authenticated
    for url in (
        "https://smba.trafficmanager.net/amer/",
        "https://smba.trafficmanager.net/emea-client-ss.msg/",
        "https://smba.infra.gcc.teams.microsoft.com/gcc/",
        "https://smba.infra.gov.teams.microsoft.us/",
        "https://europe.webchat.botframework.com/",
    ):
        assert service_url_problem(url, mode=authenticated) is None, url
    for url in (
        "http://smba.trafficmanager.net/amer/",  # not over HTTPS
        "https://smba.trafficmanager.net.evil.example/",
        "https://evil.example/smba.trafficmanager.net/",
        "https://botframework.com.evil.example/",
        "http://127.0.0.1:8080/",
        "ftp://smba.trafficmanager.net/",
        "not a url",
        "https://[::1/",
    ):
        assert service_url_problem(url, mode=authenticated) is not None, url
    extra = frozenset({"127.0.0.1:8080"})
    assert (
        service_url_problem("http://127.0.0.1:8080/x/", mode=authenticated, extra_hosts=extra)
        is None
    )
    assert service_url_problem("http://127.0.0.1:9090/", mode=authenticated, extra_hosts=extra)
    emulator = TeamsMode.emulator
    for url in ("http://127.0.0.1:3978/", "http://localhost:1/", "http://[::1]:2/"):
        assert service_url_problem(url, mode=emulator) is None, url
    for url in ("https://smba.trafficmanager.net/amer/", "http://192.0.2.2:80/"):
        assert service_url_problem(url, mode=emulator) is not None, url
    assert service_url_problem("https://smba.trafficmanager.net/amer/", mode=TeamsMode.off)


# ---------------------------------------------------------------- binding identities


async def mallory_claims_alices_email(
    server: LiveServer, standin: TeamsStandIn, admins: tuple[Person, ...]
) -> None:
    """Alice and the `admins` (made admins) write to the bot; then another account the
    connector also calls Alice (a second tenant, a renamed user…) writes twice."""
    for person in (ALICE, *admins):
        assert await post(server.url, activity("personal_message", person, standin.service_url))
    with server.store.session() as session:
        for person in admins:
            admin = stored_members.member_by(session, teams_user_id=person.user_id)
            assert admin is not None
            admin.role = "admin"
            session.add(admin)
    template = standin.members[ALICE.user_id]
    standin.add_member(
        MALLORY.user_id, "Alice", "Adams", ALICE.email, template, MALLORY.conversation
    )
    for _ in range(2):
        status, _ = await post(
            server.url, activity("personal_message", MALLORY, standin.service_url, text="leads")
        )
        assert status == 202
    await server.settle()


def claim_notices(standin: TeamsStandIn, admin: Person) -> list[Any]:
    return [
        c
        for c in standin.of("send", admin.conversation)
        if "claimed a member's email" in json.dumps(c.card)
    ]


async def test_a_claimed_email_never_rebinds_someone_elses_teams_account(
    tmp_path: Path, standin: TeamsStandIn
) -> None:
    server = await LiveServer(teams_settings(f"sqlite:///{tmp_path / 'liaison.db'}")).start()
    try:
        await mallory_claims_alices_email(server, standin, (ADA,))
        # The admin hears it privately, once.
        [notice] = claim_notices(standin, ADA)
        assert "Alice Adams is already linked" in json.dumps(notice.card)
        with server.store.session() as session:
            alice = stored_members.member_by(session, email=ALICE.email)
            newcomer = stored_members.member_by(session, teams_user_id=MALLORY.user_id)
        assert alice is not None and alice.teams_user_id == ALICE.user_id
        assert alice.teams_reference is not None
        assert alice.teams_reference["conversation"]["id"] == ALICE.conversation
        assert newcomer is not None and newcomer.id != alice.id and newcomer.email is None
    finally:
        await server.stop()


async def test_every_admin_hears_of_a_claimed_email_once(tmp_path: Path) -> None:
    """With two admins, each gets the notice (one was keyed for all of them, so only the
    first heard it), and a repeated activity tells nobody twice."""
    standin = await connector_with((ALICE, ADA, BEA))
    server = await LiveServer(teams_settings(f"sqlite:///{tmp_path / 'liaison.db'}")).start()
    try:
        await mallory_claims_alices_email(server, standin, (ADA, BEA))
        for admin in (ADA, BEA):
            assert len(claim_notices(standin, admin)) == 1, admin
    finally:
        await server.stop()
        await standin.stop()


def test_upsert_member_refuses_to_rebind_a_platform_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server_store = make_settings(f"sqlite:///{tmp_path / 'x.db'}")
    from storage.db import Store

    store = Store.open(server_store.database_url)
    try:
        with store.session() as session:
            ada = stored_members.upsert_member(
                session, now=now(), email=ADA.email, slack_user_id="U0ADA", teams_user_id="29:ada"
            )
            ada_id = ada.id
        with caplog.at_level(logging.WARNING, logger="storage.members"), store.session() as s:
            teams_claim = stored_members.upsert_member(
                s, now=now(), email=ADA.email.upper(), teams_user_id="29:mallory", name="Ada"
            )
            slack_claim = stored_members.upsert_member(
                s, now=now(), email=ADA.email, slack_user_id="U0MALLORY", name="Ada"
            )
            assert {teams_claim.id, slack_claim.id}.isdisjoint({ada_id})
            assert teams_claim.email is None and slack_claim.email is None
            # Found by its own id, the newcomer still cannot take the email.
            again = stored_members.upsert_member(
                s, now=now(), email=ADA.email, teams_user_id="29:mallory"
            )
            assert again.id == teams_claim.id and again.email is None
        with store.session() as session:
            kept = stored_members.member_by(session, email=ADA.email)
            assert kept is not None and kept.id == ada_id
            assert (kept.slack_user_id, kept.teams_user_id) == ("U0ADA", "29:ada")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and all("was not bound" in w for w in warnings)
        assert not any(ADA.email in w for w in warnings)  # no personal data in the log
        # A member known only by email is bound on first sight, as before.
        with store.session() as session:
            stored_members.upsert_member(session, now=now(), email=ALICE.email, name=ALICE.name)
            bound = stored_members.upsert_member(
                session, now=now(), email=ALICE.email, teams_user_id="29:alice"
            )
            assert bound.email == ALICE.email and bound.teams_user_id == "29:alice"
    finally:
        store.engine.dispose()


async def test_an_activity_from_another_tenant_is_refused(
    tmp_path: Path, standin: TeamsStandIn
) -> None:
    settings = teams_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}", MICROSOFT_APP_TENANT_ID=TENANT
    )
    server = await LiveServer(settings).start()
    try:
        other = "0f0f0f0f-1111-2222-3333-444444444444"
        foreign = [
            activity(
                "personal_message",
                ALICE,
                standin.service_url,
                channelData={"tenant": {"id": other}},
                conversation={"conversationType": "personal", "tenantId": other, "id": "a:1"},
            ),
            activity("personal_message", ALICE, standin.service_url, channelData={}),
        ]
        foreign[1]["conversation"].pop("tenantId")
        for body in foreign:
            status, answer = await post(server.url, body)
            assert status == 403 and "tenant" in answer["error"]
        with server.store.session() as session:
            assert session.exec(select(Member)).all() == []
        assert standin.calls == []
        status, _ = await post(server.url, activity("personal_message", ALICE, standin.service_url))
        assert status == 202
        with server.store.session() as session:
            assert stored_members.member_by(session, teams_user_id=ALICE.user_id) is not None
    finally:
        await server.stop()


# ---------------------------------------------------------------- with real credentials


@pytest.fixture
def microsoft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MicrosoftAuthStandIn]:
    auth = MicrosoftAuthStandIn(
        tmp_path, app_id=APP_ID, secret="not-a-real-secret", tenant=TENANT
    ).start()
    # Its self-signed certificate: MSAL (requests) and the signing-key fetches (urllib).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(auth.ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(auth.ca_file))
    yield auth
    auth.stop()


async def test_a_signed_activity_gets_in_and_every_call_back_carries_the_bots_token(
    tmp_path: Path, standin: TeamsStandIn, microsoft: MicrosoftAuthStandIn
) -> None:
    standin.token_valid = microsoft.valid  # as strict as the real connector
    settings = authenticated_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        LIAISON_TEAMS_AUTH_URL=microsoft.url,
        LIAISON_TEAMS_SERVICE_HOSTS="127.0.0.1",
    )
    server = await LiveServer(settings).start()
    try:
        url = standin.service_url
        said = activity("personal_message", ALICE, url, text="help")
        status, _ = await post(server.url, said, {"Authorization": microsoft.sign(url)})
        assert status == 202
        with server.store.session() as session:
            alice = stored_members.member_by(session, teams_user_id=ALICE.user_id)
        assert alice is not None and alice.email == ALICE.email  # looked up with the token
        [reply] = standin.of("reply", ALICE.conversation)
        assert reply.activity_id == said["id"]
        assert microsoft.issued and not standin.of("unauthorized")
        assert f"POST /{TENANT}/oauth2/v2.0/token" in microsoft.requests

        # Tokens Teams would never send: each a 401, nothing recorded or called.
        calls = len(standin.calls)
        bad = [
            microsoft.sign(url, aud="another-bot"),
            microsoft.sign(url, exp=int(datetime.now(UTC).timestamp()) - 3600),
            microsoft.sign(url, iss="https://sts.windows.net/evil/"),
            microsoft.sign("https://smba.trafficmanager.net/amer/"),  # for another serviceUrl
        ]
        for header in bad:
            body = activity("personal_message", MALLORY, url, text="help")
            status, answer = await post(server.url, body, {"Authorization": header})
            assert status == 401, (header, answer)
        assert len(standin.calls) == calls
        with server.store.session() as session:
            assert stored_members.member_by(session, teams_user_id=MALLORY.user_id) is None

        # A signed activity naming a connector that is not Microsoft's: refused, not called.
        stray = activity("personal_message", BOB_ELSEWHERE, "https://evil.example/x/")
        status, answer = await post(
            server.url, stray, {"Authorization": microsoft.sign("https://evil.example/x/")}
        )
        assert status == 403 and "serviceUrl" in answer["error"]

        # Without a token Microsoft issued, the connector refuses the bot's calls.
        microsoft.revoke()
        standin.token_valid = lambda token: False
        again = activity("personal_message", ALICE, url, text="help")
        status, _ = await post(server.url, again, {"Authorization": microsoft.sign(url)})
        assert status == 202
        assert standin.of("unauthorized") and not [
            c for c in standin.of("reply") if c.activity_id == again["id"]
        ]
    finally:
        await server.stop()


async def test_entra_tokens_of_this_tenant_only_and_no_forged_signature(
    tmp_path: Path, standin: TeamsStandIn, microsoft: MicrosoftAuthStandIn
) -> None:
    """Tokens Entra issues (v2 issuer, `tid`) get in for the bot's own tenant; one for
    another tenant, or with a `tid` that is not its issuer's, or signed with a key the key
    service never published, is a 401 with nothing recorded and nothing called."""
    standin.token_valid = microsoft.valid
    settings = authenticated_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        LIAISON_TEAMS_AUTH_URL=microsoft.url,
        LIAISON_TEAMS_SERVICE_HOSTS="127.0.0.1",
    )
    server = await LiveServer(settings).start()
    try:
        url = standin.service_url
        other = "0f0f0f0f-1111-2222-3333-444444444444"
        (tmp_path / "forger").mkdir()
        forger = MicrosoftAuthStandIn(
            tmp_path / "forger", app_id=APP_ID, secret="x", tenant=TENANT
        ).start()
        refused = [
            microsoft.sign(
                url, entra=True, iss=f"https://login.microsoftonline.com/{other}/v2.0", tid=other
            ),
            microsoft.sign(url, entra=True, tid=other),  # tid is not the issuer's tenant
            microsoft.sign(url, entra=True, iss=f"https://sts.windows.net/{other}/"),
            forger.sign(url),  # the right claims, another key
            forger.sign(url, entra=True),
        ]
        for header in refused:
            body = activity("personal_message", MALLORY, url, text="help")
            status, answer = await post(server.url, body, {"Authorization": header})
            assert status == 401, (header, answer)
            assert "token" in answer["error"]
        assert standin.calls == []
        with server.store.session() as session:
            assert session.exec(select(Member)).all() == []
            assert channels.get_setting(session, key=teams.SERVICE_KEY) is None

        said = activity("personal_message", ALICE, url, text="help")
        status, _ = await post(server.url, said, {"Authorization": microsoft.sign(url, entra=True)})
        assert status == 202
        [reply] = standin.of("reply", ALICE.conversation)
        assert reply.activity_id == said["id"]
        assert f"GET /{TENANT}/discovery/v2.0/keys" in microsoft.requests
        assert forger.requests == []
        forger.stop()
    finally:
        await server.stop()


async def test_unreadable_signing_keys_are_a_503_not_a_500(
    tmp_path: Path, standin: TeamsStandIn, microsoft: MicrosoftAuthStandIn
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    closed.close()
    settings = authenticated_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        LIAISON_TEAMS_AUTH_URL=f"https://127.0.0.1:{port}",
        LIAISON_TEAMS_SERVICE_HOSTS="127.0.0.1",
    )
    server = await LiveServer(settings).start()
    try:
        url = standin.service_url
        said = activity("personal_message", ALICE, url)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.url}/api/messages",
                json=said,
                headers={"Authorization": microsoft.sign(url)},
            ) as response,
        ):
            assert response.status == 503 and response.headers["Retry-After"] == "30"
            assert "try again" in (await response.json())["error"]
        assert standin.calls == []
    finally:
        await server.stop()


async def test_a_signing_key_service_that_never_answers_is_a_503_within_the_timeout(
    tmp_path: Path, standin: TeamsStandIn, microsoft: MicrosoftAuthStandIn
) -> None:
    """A key service that takes the connection and never answers must cost one call
    timeout (the SDK's own key client would wait 30 s), with the event loop free."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # takes connections, never answers
    port = silent.getsockname()[1]
    settings = authenticated_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        LIAISON_TEAMS_AUTH_URL=f"https://127.0.0.1:{port}",
        LIAISON_TEAMS_SERVICE_HOSTS="127.0.0.1",
        LIAISON_PLATFORM_TIMEOUT_SECONDS="1",
    )
    server = await LiveServer(settings).start()
    try:
        url = standin.service_url
        said = activity("personal_message", ALICE, url)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            health = asyncio.create_task(http.get(f"{server.url}/healthz"))
            async with http.post(
                f"{server.url}/api/messages",
                json=said,
                headers={"Authorization": microsoft.sign(url)},
            ) as response:
                assert response.status == 503 and response.headers["Retry-After"] == "30"
            async with await health as answered:  # the loop was free meanwhile
                assert answered.status == 200
        assert standin.calls == []
    finally:
        await server.stop()
        silent.close()


def test_each_credential_setting_picks_the_sdks_credential_kind() -> None:
    """The SDK's MSAL provider is told which credential to use; none of them needs the
    client secret, and a managed identity needs nothing but the app and tenant ids."""
    from microsoft_agents.hosting.core.authorization import AuthTypes

    from bot.teams.auth import auth_type, configuration

    base = {"LIAISON_TEAMS_EMULATOR": "0", "MICROSOFT_APP_ID": APP_ID}
    base["MICROSOFT_APP_TENANT_ID"] = TENANT
    cases = {
        AuthTypes.client_secret: {"MICROSOFT_APP_PASSWORD": "s"},
        AuthTypes.certificate: {"LIAISON_TEAMS_CERTIFICATE_FILE": "/run/bot.pfx"},
        AuthTypes.federated_credentials: {"LIAISON_TEAMS_FEDERATED_CLIENT_ID": "mi-client"},
        AuthTypes.workload_identity: {"LIAISON_TEAMS_FEDERATED_TOKEN_FILE": "/var/run/token"},
        AuthTypes.user_managed_identity: {"MICROSOFT_APP_TYPE": "UserAssignedMSI"},
    }
    for kind, values in cases.items():
        settings = teams_settings("sqlite://", **{**base, **values})
        assert settings.teams_credentials_problem() is None, kind
        assert auth_type(settings) == kind
        config = configuration(settings)
        assert config.CLIENT_ID == APP_ID and config.TENANT_ID == TENANT
        assert config.VALIDATE_ISSUER and not config.ANONYMOUS_ALLOWED
        assert "https://api.botframework.com" in config.ISSUERS
        assert f"https://login.microsoftonline.com/{TENANT}/v2.0" in config.ISSUERS
    settings = teams_settings("sqlite://", **base)
    assert settings.teams_credentials_problem() is not None  # no credential at all


def test_the_cli_and_settings_do_not_load_the_teams_sdk() -> None:
    """`bot.core.settings` needs no Teams code; the Agents SDK (seconds to import on
    a busy machine) is loaded only by what talks to Teams."""
    import subprocess
    import sys

    code = (
        "import sys, app, bot.core.settings\n"
        "assert not [m for m in sys.modules if m.startswith('microsoft_agents')]\n"
        "from bot import teams\n"
        "assert teams.make_adapter and 'microsoft_agents.hosting.core' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def test_a_certificate_gets_the_bots_token_instead_of_a_secret(
    tmp_path: Path, standin: TeamsStandIn, microsoft: MicrosoftAuthStandIn
) -> None:
    """LIAISON_TEAMS_CERTIFICATE_FILE (a PFX, no MICROSOFT_APP_PASSWORD): the SDK's MSAL
    provider signs a client assertion with it, the token service checks it against the
    certificate uploaded to the app registration, and the connector calls carry the token."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    from tests.teams_auth_standin import _certificate

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = _certificate(key)
    pfx = tmp_path / "bot.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(b"liaison", key, certificate, None, NoEncryption())
    )
    standin.token_valid = microsoft.valid
    settings = authenticated_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        MICROSOFT_APP_PASSWORD="",
        LIAISON_TEAMS_CERTIFICATE_FILE=str(pfx),
        LIAISON_TEAMS_AUTH_URL=microsoft.url,
        LIAISON_TEAMS_SERVICE_HOSTS="127.0.0.1",
    )
    url = standin.service_url
    server = await LiveServer(settings).start()
    try:
        # Not uploaded yet: Entra refuses the assertion; without its token the bot cannot
        # answer, so nothing runs and Teams is told to try again (not a 500).
        first = activity("personal_message", ALICE, url, text="help")
        status, answer = await post(server.url, first, {"Authorization": microsoft.sign(url)})
        assert status == 503 and "token" in answer["error"]
        assert not microsoft.issued and standin.calls == []
        with server.store.session() as session:
            assert session.exec(select(Member)).all() == []
    finally:
        await server.stop()
    microsoft.trust_certificate(certificate)
    server = await LiveServer(settings).start()
    try:
        said = activity("personal_message", ALICE, url, text="help")
        status, _ = await post(server.url, said, {"Authorization": microsoft.sign(url)})
        assert status == 202
        [reply] = standin.of("reply", ALICE.conversation)
        assert reply.activity_id == said["id"] and microsoft.issued
        assert not [c for c in standin.calls if c.verb == "unauthorized" and c.activity_id]
    finally:
        await server.stop()
