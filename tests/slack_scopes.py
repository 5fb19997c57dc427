"""Which bot scopes each Slack Web API method needs, and which methods Liaison calls.

The table is taken from each method's "Scopes" facts in Slack's reference
(https://docs.slack.dev/reference/methods/<method>, e.g.
https://docs.slack.dev/reference/methods/files.getUploadURLExternal and
https://docs.slack.dev/reference/scopes/chat.write, "Compatible API methods"). A method with
no entry is one Liaison has never called: the stand-in refuses it and the manifest test
fails, so whoever adds a call adds its scopes here (and to manifests/slack.yaml).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "slack.yaml"

# method → the bot scopes it needs (all of them); () = no scope, any valid token.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "conversations.open": ("im:write",),  # a DM; other conversation types need others
    # History is read per conversation type (channels:, groups:, im:history); Liaison looks
    # for an earlier send in public and private channels and in DMs, so it needs all three.
    "conversations.history": ("channels:history", "groups:history", "im:history"),
    "conversations.replies": ("channels:history", "groups:history", "im:history"),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
    "users.info": ("users:read",),
    "users.lookupByEmail": ("users:read.email",),
    "views.open": (),
    "views.publish": (),
}

# Scopes that features of the manifest (not Web API calls) need, from the same reference:
# slash commands need `commands`; the `message.im` event needs `im:history`.
FEATURE_SCOPES = {"slash_commands": "commands", "message.im": "im:history"}

# The modules that talk to Slack's Web API (the Slack edge: bot/slack/).
ADAPTER = sorted((ROOT / "bot" / "slack").glob("*.py"))


def manifest_scopes(path: Path = MANIFEST) -> frozenset[str]:
    """The bot scopes manifests/slack.yaml asks for at install."""
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    return frozenset(manifest["oauth_config"]["scopes"]["bot"])


def sdk_methods(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The Web API methods one `AsyncWebClient` method calls, read from slack_sdk's own
    source: `api_call("chat.postMessage", …)`, and for helpers such as `files_upload_v2`
    the client methods they call in turn (files.getUploadURLExternal + completeUpload…)."""
    function = getattr(AsyncWebClient, name, None)
    if function is None or name in seen:
        return set()
    source = inspect.getsource(function)
    methods = set(re.findall(r"api_call\(\s*\"([\w.]+)\"", source))
    for inner in set(re.findall(r"self\.(\w+)\(", source)) - {"api_call"}:
        methods |= sdk_methods(inner, seen | {name})
    return methods


def client_calls(paths: Iterable[Path] = ADAPTER) -> dict[str, set[str]]:
    """`x.client.<name>(…)` and `client.<name>(…)` calls in the adapter's source (an AST
    scan), as the Web API methods they reach → the places that call them."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            named = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if named != "client":
                continue
            for method in sdk_methods(node.func.attr):
                found.setdefault(method, set()).add(f"{path.name}:{node.lineno}")
    return found


def needed_scopes(methods: Iterable[str]) -> dict[str, set[str]]:
    """scope → the methods that need it; KeyError for a method missing from the table."""
    needs: dict[str, set[str]] = {}
    for method in methods:
        for scope in METHOD_SCOPES[method]:
            needs.setdefault(scope, set()).add(method)
    return needs
