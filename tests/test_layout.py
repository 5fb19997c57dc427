"""The layout's rules (README, "How it is built"), checked on the import graph and the syntax
tree of the code itself, so a change that breaks one fails here with the offending lines.

1. The neutral core (`bot.core`) imports no edge, handler, digest, outbox sender, nor the
   SQLModel table classes (`storage.models`).
2. `handlers` imports only the core and `storage`; `digests` the core, `storage`, the
   handlers and the outbox sender; the sender (`bot.outbox`) the core and `storage`;
   `storage` nothing above it but business time; only the edges import Slack's and
   Microsoft's SDKs.
3. No SQL is built or run outside `storage`: no `select()`/`insert()`/… and no
   `session.exec/add/execute/…` anywhere else.
4. `app.py` holds no business rule: it imports the command line and registers handlers (and
   the digests' one command, `/digest`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "digests", "storage")
EDGES = ("bot.slack", "bot.teams", "bot.console", "bot.web", "bot.cli")
PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "microsoft_agents")


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def inside(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def imports_of(
    *packages: str, g: grimp.ImportGraph | None = None
) -> Iterator[tuple[str, str, int]]:
    """(importer, imported, line) for every import made by a module of `packages`."""
    g = g or graph()
    for importer in sorted(g.modules):
        if not inside(importer, *packages):
            continue
        for imported in sorted(g.find_modules_directly_imported_by(importer)):
            for detail in g.get_import_details(importer=importer, imported=imported):
                yield importer, imported, int(detail["line_number"])


def offending(
    *packages: str,
    allowed: tuple[str, ...],
    forbidden: tuple[str, ...] = (),
    g: grimp.ImportGraph | None = None,
) -> list[str]:
    """Imports by `packages` of a first-party module outside `allowed`, or of `forbidden`."""
    found = []
    for importer, imported, line in imports_of(*packages, g=g):
        first_party = inside(imported, *PACKAGES)
        if (first_party and not inside(imported, *allowed)) or inside(imported, *forbidden):
            found.append(f"{importer}:{line} imports {imported}")
    return sorted(set(found))


def test_the_graph_sees_the_packages() -> None:
    """Guards the rules below against passing on an empty graph."""
    g = graph()
    assert {"bot.core.router", "handlers.leads", "digests.weekly", "storage.db"} <= g.modules
    assert "bot.core.effects" in g.find_modules_directly_imported_by("bot.core.router")


def test_rule_1_the_core_imports_nothing_above_it_and_no_table_classes() -> None:
    assert core_offences() == []


def core_offences(g: grimp.ImportGraph | None = None) -> list[str]:
    return offending(
        "bot.core", allowed=("bot.core", "storage"), forbidden=("storage.models",), g=g
    )


def handler_offences(g: grimp.ImportGraph | None = None) -> list[str]:
    return offending("handlers", allowed=("bot.core", "storage", "handlers"), g=g)


def test_rule_2_handlers_import_only_the_core_and_storage() -> None:
    assert handler_offences() == []


def test_rule_2_digests_import_only_the_core_storage_handlers_and_the_sender() -> None:
    allowed = ("bot.core", "bot.outbox", "storage", "handlers", "digests")
    assert offending("digests", allowed=allowed) == []


def test_rule_2_the_outbox_sender_imports_only_the_core_and_storage() -> None:
    """The sender sits beside the core: it sends what handlers owed, knowing none of them."""
    assert offending("bot.outbox", allowed=("bot.core", "bot.outbox", "storage")) == []


def test_rule_2_only_the_edges_import_the_platform_sdks() -> None:
    found = [
        f"{importer}:{line} imports {imported}"
        for importer, imported, line in imports_of(*PACKAGES)
        if inside(imported, *PLATFORM_SDKS) and not inside(importer, *EDGES)
    ]
    assert found == []


def test_rule_2_storage_imports_no_chat_handler_or_digest() -> None:
    """The bottom of the stack: business time is the one piece of the core it uses."""
    assert offending("storage", allowed=("storage", "bot.core.business_time")) == []


SQL_BUILDERS = frozenset(
    {"select", "insert", "update", "delete", "text", "func", "col", "and_", "or_"}
)
SESSION_CALLS = frozenset({"exec", "execute", "add", "add_all", "delete"})


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        path = ROOT / folder
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def receiver(node: ast.expr) -> str:
    """`session` for `session.exec`, `ctx.session` for `ctx.session.add`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{receiver(node.value)}.{node.attr}"
    return ""


def sql_outside_storage(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    where = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
            "sqlmodel",
            "sqlalchemy",
        }:
            built = sorted(a.name for a in node.names if a.name in SQL_BUILDERS)
            if built:
                found.append(f"{where}:{node.lineno} imports {', '.join(built)} from {node.module}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = receiver(node.func.value)
            if node.func.attr in SESSION_CALLS and target.split(".")[-1].endswith("session"):
                found.append(f"{where}:{node.lineno} calls {target}.{node.func.attr}()")
    return found


def test_rule_3_no_sql_outside_storage() -> None:
    found = [
        line
        for path in python_files("bot", "handlers", "digests", "app.py")
        for line in sql_outside_storage(path)
    ]
    assert found == []


def test_rule_3_the_check_sees_sql_where_there_is_some() -> None:
    """The same check over `storage/` finds its queries, so an empty answer above means none."""
    found = [line for path in python_files("storage") for line in sql_outside_storage(path)]
    assert any("imports select" in line for line in found)
    assert any(".exec()" in line for line in found)


def test_rule_4_app_py_only_composes() -> None:
    """app.py: a docstring, imports, and functions that only register handlers (and the
    digests' one command, `/digest`) on a router and start the command line; no branch, loop
    over data, query or literal rule."""
    source = (ROOT / "app.py").read_text()
    assert len(source.splitlines()) <= 100
    tree = ast.parse(source)
    first_party = {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    } & set(PACKAGES)
    assert first_party <= {"bot", "handlers", "digests"}
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert all(
        inside(m, "bot.cli", "bot.core", "handlers", "digests")
        for m in imported
        if inside(m, *PACKAGES)
    )
    guards = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_main_guard_or_type_checking(node)
        for inner in ast.walk(node)
    }
    rules = [
        f"app.py:{node.lineno} {type(node).__name__}"
        for node in ast.walk(tree)
        if isinstance(node, ast.If | ast.While | ast.Try | ast.Compare | ast.BoolOp | ast.IfExp)
        and id(node) not in guards
    ]
    assert rules == []


def _is_main_guard_or_type_checking(node: ast.If) -> bool:
    test = ast.unparse(node.test)
    return test in {"TYPE_CHECKING", "__name__ == '__main__'"}


@pytest.mark.parametrize(
    ("path", "line", "check", "expected"),
    [
        (
            "bot/core/router.py",
            "import handlers.leads",
            "core",
            "bot.core.router:1 imports handlers.leads",
        ),
        (
            "bot/core/effects.py",
            "import storage.models",
            "core",
            "bot.core.effects:1 imports storage.models",
        ),
        (
            "handlers/leads.py",
            "import digests.weekly",
            "handlers",
            "handlers.leads:1 imports digests.weekly",
        ),
    ],
)
def test_a_module_that_breaks_a_rule_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, line: str, check: str, expected: str
) -> None:
    """The rules' checks, run on a scratch copy of the code with one forbidden import added,
    name that import."""
    import shutil
    import sys

    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    target = tmp_path / path
    target.write_text(line + "\n" + target.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if inside(n, *PACKAGES)]:
        monkeypatch.delitem(sys.modules, name)
    scratch = grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)
    found = core_offences(scratch) if check == "core" else handler_offences(scratch)
    assert expected in found
