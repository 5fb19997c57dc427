"""A lead-definition criterion typed without a key gets one made from its text, in the
console's proposal form and in `liaison leaddef set`'s YAML, as in the chat form (see
tests/test_approvals.py and tests/test_approvals_slack.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app import cli
from storage import definitions
from storage.db import Store
from tests.test_approvals_console import people
from tests.test_cli import db  # noqa: F401 (the fixture)
from tests.test_console import make_chat

runner = CliRunner()


async def test_the_console_proposal_takes_lines_without_keys(sqlite_store: Store) -> None:
    people(sqlite_store)
    chat, screen, typist = make_chat(sqlite_store)
    chat.switch("carol")
    typist.lines.extend(
        [
            "budget: Budget approved",
            "Uses a CRM",
            "Budget confirmed or likely",  # the text budget had: a new key, budget is taken
            "",
            "Simpler criteria",
        ]
    )
    await chat.line("/leaddef propose")
    text = screen.getvalue()
    assert "Approval #1 is on its way" in text
    assert "Added: uses_a_crm" in text and "Added: budget_confirmed_or_likely" in text


def test_leaddef_set_makes_keys_for_criteria_without_one(
    db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    spec = tmp_path / "def.yaml"
    spec.write_text(
        "note: plain words\n"
        "criteria:\n"
        "  - key: budget\n    text: Budget approved\n"
        "  - text: Uses a CRM\n"
        "  - Talks to the decision maker\n"
        "  - Budget confirmed or likely\n"
    )
    result = runner.invoke(cli, ["leaddef", "set", str(spec)])
    assert result.exit_code == 0, result.output
    assert "v2 is now in force (4 criteria)" in result.output
    assert "Keys made from the text: uses_a_crm (Uses a CRM)" in result.output
    store = Store.open(db)
    with store.session() as session:
        _, criteria = definitions.current_definition(session)
        assert [(c.key, c.text) for c in criteria] == [
            ("budget", "Budget approved"),
            ("uses_a_crm", "Uses a CRM"),
            ("talks_to_the_decision_maker", "Talks to the decision maker"),
            ("budget_confirmed_or_likely", "Budget confirmed or likely"),
        ]
    # The same text again later keeps its key; a key given twice is still refused.
    spec.write_text("criteria:\n  - Uses a CRM\n  - text: In territory\n")
    result = runner.invoke(cli, ["leaddef", "set", str(spec)])
    assert result.exit_code == 0 and "in_territory (In territory)" in result.output
    with store.session() as session:
        assert [c.key for c in definitions.current_definition(session)[1]] == [
            "uses_a_crm",
            "in_territory",
        ]
    spec.write_text("criteria:\n  - key: a\n    text: One\n  - key: a\n    text: Two\n")
    result = runner.invoke(cli, ["leaddef", "set", str(spec)])
    assert result.exit_code == 2 and "unique" in result.output
