"""The Slack and Teams app manifests agree with the code: URLs, scopes, commands and icons."""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from app import build_router
from tests.slack_scopes import (
    FEATURE_SCOPES,
    METHOD_SCOPES,
    client_calls,
    needed_scopes,
)

ROOT = Path(__file__).resolve().parents[1]
SLACK = ROOT / "manifests" / "slack.yaml"
TEAMS = ROOT / "manifests" / "teams"
BUILD = TEAMS / "build_package.py"
APP_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
PLACEHOLDER = "{{MICROSOFT_APP_ID}}"
# Microsoft's published schema of the manifest version we ship (source: tests/schemas/README.md)
TEAMS_SCHEMA = json.loads(
    (ROOT / "tests" / "schemas" / "MicrosoftTeams.v1.25.schema.json").read_text(encoding="utf-8")
)


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Where `manifest` breaks Microsoft's Teams manifest schema, if anywhere. The schema
    says draft-04 but pins `manifestVersion` with `const` (draft-06), which Microsoft's own
    tooling honours: draft-07 rules read it as meant (they differ from draft-04 in nothing
    else the schema uses)."""
    validator = jsonschema.Draft7Validator(TEAMS_SCHEMA)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]


@pytest.fixture(scope="module")
def slack() -> dict[str, Any]:
    manifest = yaml.safe_load(SLACK.read_text(encoding="utf-8"))
    assert isinstance(manifest, dict)
    return manifest


@pytest.fixture(scope="module")
def teams() -> dict[str, Any]:
    manifest = json.loads((TEAMS / "manifest.json").read_text(encoding="utf-8"))
    assert isinstance(manifest, dict)
    return manifest


@pytest.fixture(scope="module")
def commands() -> list[str]:
    """The command names a person can type, as the router registers them."""
    return [name for name, _route in build_router().commands()]


def slash_commands(slack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["command"]: c for c in slack["features"]["slash_commands"]}


# --- Slack ---------------------------------------------------------------------------------


def test_slack_manifest_shape(slack: dict[str, Any]) -> None:
    assert slack["_metadata"]["major_version"] == 2
    info = slack["display_information"]
    assert info["name"] == "Liaison"
    assert 0 < len(info["description"]) <= 140
    assert info["background_color"].startswith("#")
    features = slack["features"]
    assert features["bot_user"] == {"display_name": "Liaison", "always_online": True}
    assert features["app_home"] == {
        "home_tab_enabled": True,
        "messages_tab_enabled": True,
        "messages_tab_read_only_enabled": False,
    }
    settings = slack["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def missing_scopes(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """The bot scopes the code needs and `manifest` does not grant → what needs them: the
    Web API methods the Slack adapter calls (an AST scan of bot/slack*.py, resolved to API
    methods through slack_sdk's source, scopes from Slack's reference in
    tests/slack_scopes.py) and the features the manifest declares (slash commands, events)."""
    calls = client_calls()
    unknown = sorted(set(calls) - set(METHOD_SCOPES))
    assert not unknown, f"add the scopes of {unknown} (called at {[calls[m] for m in unknown]})"
    needs = needed_scopes(calls)
    if manifest["features"].get("slash_commands"):
        needs.setdefault(FEATURE_SCOPES["slash_commands"], set()).add("slash commands")
    if "message.im" in manifest["settings"]["event_subscriptions"]["bot_events"]:
        needs.setdefault(FEATURE_SCOPES["message.im"], set()).add("message.im events")
    granted = set(manifest["oauth_config"]["scopes"]["bot"])
    return {scope: why for scope, why in needs.items() if scope not in granted}


def test_slack_has_the_scopes_the_code_needs(slack: dict[str, Any]) -> None:
    assert missing_scopes(slack) == {}


def test_the_scope_check_sees_every_call_and_catches_a_missing_scope(
    slack: dict[str, Any],
) -> None:
    calls = client_calls()
    assert {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "files.getUploadURLExternal",  # files_upload_v2, the digest's chart
        "files.completeUploadExternal",
        "users.lookupByEmail",
        "users.info",
        "views.open",
        "views.publish",
    } <= set(calls)
    adapter = ("app.py:", "preflight.py:")  # the Slack edge: its sends and its checks
    assert all(place.startswith(adapter) for places in calls.values() for place in places)
    assert calls["auth.test"] and calls["conversations.history"]
    bot = slack["oauth_config"]["scopes"]["bot"]
    without = copy.deepcopy(slack)
    without["oauth_config"]["scopes"]["bot"] = [s for s in bot if s != "files:write"]
    assert missing_scopes(without) == {
        "files:write": {"files.getUploadURLExternal", "files.completeUploadExternal"}
    }
    without["oauth_config"]["scopes"]["bot"] = [s for s in bot if s != "commands"]
    assert missing_scopes(without) == {"commands": {"slash commands"}}


def test_slack_subscribes_to_dm_messages(slack: dict[str, Any]) -> None:
    events = slack["settings"]["event_subscriptions"]["bot_events"]
    assert "message.im" in events
    assert "app_home_opened" in events  # the Home tab is published when opened


def test_every_slack_url_is_the_one_bolt_endpoint(slack: dict[str, Any]) -> None:
    settings = slack["settings"]
    urls = [
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        *(c["url"] for c in slack["features"]["slash_commands"]),
    ]
    for url in urls:
        assert url.startswith("https://"), url
        assert url.endswith("/slack/events"), url


def test_slash_commands_are_well_formed(slack: dict[str, Any]) -> None:
    for command in slack["features"]["slash_commands"]:
        name = command["command"]
        assert name.startswith("/") and name == name.lower() and len(name) <= 32, name
        assert command["description"], name
        assert command["should_escape"] is False, name


def test_every_router_command_is_reachable_from_slack(
    slack: dict[str, Any], commands: list[str]
) -> None:
    declared = slash_commands(slack)
    # The adapter maps `/liaison <name>` to the command <name>, so /liaison reaches them all.
    assert "/liaison" in declared, "/liaison <command> is how every command is reached"
    hint = declared["/liaison"]["usage_hint"]
    for name in commands:
        assert name in hint.split(" | "), f"/liaison usage_hint does not mention {name}"
    # No slash command that the router would answer with "unknown command".
    for slash in declared:
        assert slash == "/liaison" or slash.lstrip("/") in commands, slash


# --- Teams ---------------------------------------------------------------------------------


def test_teams_manifest_shape(teams: dict[str, Any]) -> None:
    assert teams["manifestVersion"] == "1.25"
    assert "/v1.25/MicrosoftTeams.schema.json" in teams["$schema"]
    assert teams["id"] == PLACEHOLDER
    assert len(teams["name"]["short"]) <= 30 and teams["name"]["short"] == "Liaison"
    assert len(teams["name"]["full"]) <= 100
    assert 0 < len(teams["description"]["short"]) <= 80
    assert 0 < len(teams["description"]["full"]) <= 4000
    assert len(teams["developer"]["name"]) <= 32
    for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        assert teams["developer"][key].startswith("https://"), key
    assert teams["accentColor"].startswith("#") and len(teams["accentColor"]) == 7
    assert teams["permissions"] == ["identity", "messageTeamMembers"]
    assert teams["validDomains"] == []
    # The digest, wins and insights channels may be shared or private channels: the bot
    # must be addable there (manifest 1.25, channel features tier 1).
    assert teams["supportsChannelFeatures"] == "tier1"


def test_teams_bot(teams: dict[str, Any]) -> None:
    (bot,) = teams["bots"]
    assert bot["botId"] == PLACEHOLDER
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is False
    assert bot["isNotificationOnly"] is False


def test_teams_command_list_matches_the_router(teams: dict[str, Any], commands: list[str]) -> None:
    (command_list,) = teams["bots"][0]["commandLists"]
    assert command_list["scopes"] == ["personal"]
    listed = command_list["commands"]
    limit = TEAMS_SCHEMA["properties"]["bots"]["items"]["properties"]["commandLists"]["items"]
    most = limit["properties"]["commands"]["maxItems"]
    assert most == 12 and len(listed) <= most, "manifest 1.25 lists at most 12 commands"
    for command in listed:
        assert 0 < len(command["title"]) <= 32, command
        assert 0 < len(command["description"]) <= 128, command
    titles = [c["title"] for c in listed]
    assert len(set(titles)) == len(titles)
    # As many as the list holds: every one listed is a real command, `help` (which lists
    # them all) is among them, and so are `away` and `back`; with twelve or fewer
    # commands, all are listed.
    assert set(titles) <= set(commands), set(titles) - set(commands)
    assert {"help", "away", "back"} <= set(titles)
    if len(commands) <= most:
        assert sorted(titles) == sorted(commands)
    else:
        assert len(titles) == most


def png(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the PNG signature and IHDR."""
    header = path.read_bytes()[:26]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert header[12:16] == b"IHDR"
    width, height = struct.unpack(">II", header[16:24])
    return width, height, header[24], header[25]


def rgba_pixels(path: Path) -> list[tuple[int, int, int, int]]:
    """Decode an 8-bit RGBA, non-interlaced PNG with the standard library (zlib + unfilter)."""
    data = path.read_bytes()
    width, height, depth, colour = png(path)
    assert (depth, colour, data[28]) == (8, 6, 0), "expected 8-bit RGBA, not interlaced"
    idat, at = b"", 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IDAT":
            idat += body
        at += 12 + length
    raw, bpp, stride = zlib.decompress(idat), 4, width * 4
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if method == 1:
                row[x] = (row[x] + a) & 0xFF
            elif method == 2:
                row[x] = (row[x] + b) & 0xFF
            elif method == 3:
                row[x] = (row[x] + (a + b) // 2) & 0xFF
            elif method == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                best = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (row[x] + best) & 0xFF
        rows.append(row)
        previous = row
    return [(r[i], r[i + 1], r[i + 2], r[i + 3]) for r in rows for i in range(0, stride, 4)]


def test_teams_icons(teams: dict[str, Any]) -> None:
    color, outline = TEAMS / teams["icons"]["color"], TEAMS / teams["icons"]["outline"]
    width, height, _depth, colour = png(color)
    assert (width, height) == (192, 192)
    assert colour in (2, 6), "color.png must be full colour (RGB or RGBA)"
    width, height, _depth, colour = png(outline)
    assert (width, height) == (32, 32)
    assert colour == 6, "outline.png needs an alpha channel (transparent background)"


def test_teams_outline_icon_is_white_on_transparent(teams: dict[str, Any]) -> None:
    pixels = rgba_pixels(TEAMS / teams["icons"]["outline"])
    assert len(pixels) == 32 * 32
    assert all((r, g, b) == (255, 255, 255) for r, g, b, a in pixels if a), "only white"
    assert pixels[0][3] == pixels[-1][3] == 0, "corners are transparent"
    assert sum(1 for *_rgb, a in pixels if a == 255) > 50, "something is drawn"


# --- Teams package -------------------------------------------------------------------------


def run_builder(
    tmp_path: Path, *args: str, app_id: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MICROSOFT_APP_ID"}
    if app_id is not None:
        env["MICROSOFT_APP_ID"] = app_id
    return subprocess.run(
        [sys.executable, str(BUILD), "--output", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def check_package(path: Path) -> None:
    with zipfile.ZipFile(path) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        text = package.read("manifest.json").decode("utf-8")
        assert PLACEHOLDER not in text
        manifest = json.loads(text)
        assert schema_errors(manifest) == []
        assert manifest["id"] == APP_ID
        assert manifest["bots"][0]["botId"] == APP_ID
        assert package.read("color.png") == (TEAMS / "color.png").read_bytes()
        assert package.read("outline.png") == (TEAMS / "outline.png").read_bytes()


def test_the_package_manifest_is_valid_against_microsofts_schema(tmp_path: Path) -> None:
    """The manifest in the package (app id filled in) passes Microsoft's v1.25 schema, and
    the schema does catch what Teams would refuse."""
    assert TEAMS_SCHEMA["properties"]["manifestVersion"]["const"] == "1.25"
    # A valid draft-04 schema (its formats unchecked: one pattern, for Excel add-ins, uses
    # \p{L}, which JavaScript's regexes know and Python's do not).
    jsonschema.Draft4Validator(jsonschema.Draft4Validator.META_SCHEMA).validate(TEAMS_SCHEMA)
    result = run_builder(tmp_path, "--app-id", APP_ID)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "liaison-teams.zip") as package:
        manifest = json.loads(package.read("manifest.json"))
    assert schema_errors(manifest) == []
    broken = copy.deepcopy(manifest)
    commands = broken["bots"][0]["commandLists"][0]["commands"]
    commands.append({"title": "thirteenth", "description": "one too many"})
    broken["supportsChannelFeatures"] = "tier2"
    broken["bots"][0]["scopes"] = ["personal", "groupchat"]  # the 1.25 spelling is groupChat
    errors = schema_errors(broken)
    assert len(errors) == 3, errors
    assert schema_errors({**manifest, "manifestVersion": "1.17"}) != []


def test_package_with_app_id_argument(tmp_path: Path) -> None:
    result = run_builder(tmp_path, "--app-id", APP_ID)
    assert result.returncode == 0, result.stderr
    check_package(tmp_path / "liaison-teams.zip")


def test_package_with_app_id_from_environment(tmp_path: Path) -> None:
    result = run_builder(tmp_path, app_id=APP_ID)
    assert result.returncode == 0, result.stderr
    check_package(tmp_path / "liaison-teams.zip")


def test_package_refuses_without_app_id(tmp_path: Path) -> None:
    result = run_builder(tmp_path)
    assert result.returncode != 0
    assert "--app-id" in result.stderr and "MICROSOFT_APP_ID" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "liaison-teams.zip").exists()


def test_package_refuses_an_id_that_is_not_a_guid(tmp_path: Path) -> None:
    result = run_builder(tmp_path, "--app-id", "my-bot")
    assert result.returncode != 0
    assert "GUID" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "liaison-teams.zip").exists()
