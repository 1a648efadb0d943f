"""The CLI is a skin over the application: its commands, their help and their parameters come
from the table of use cases (USE_CASES), and it imports nothing below the application layer."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from cyclopts import App
from daedalus.adapters.cli import app as cli

from daedalus.app.application import USE_CASES

CLI_DIR = Path(cli.__file__).resolve().parent
CASES = {case.name: case for case in USE_CASES}
#: Use cases a command reaches through a flag rather than a command of their own.
BY_FLAG = {
    "catalog_validate_data": "daeda catalog validate --with-data",
    "train_dry_run": "daeda pipeline train --dry-run",
}


def command(path: tuple[str, ...]) -> App:
    node = cli.app
    for part in path:
        node = node[part]
    return node


def helps(node: App) -> dict[str, str]:
    """Each parameter's help, by its Python name."""
    return {a.field_info.name: a.parameter.help or "" for a in node.assemble_argument_collection()}


def test_every_use_case_is_a_cli_command_or_flag() -> None:
    assert set(cli.USES.values()) | set(BY_FLAG) == set(CASES)


@pytest.mark.parametrize("path", sorted(cli.USES), ids=" ".join)
def test_a_commands_help_is_its_use_cases_summary(path: tuple[str, ...]) -> None:
    generated = {c.path: c for c in cli.COMMANDS}
    case = CASES[cli.USES[path]]
    own = generated[path].summary if path in generated else ""
    assert command(path).help.startswith(own or case.summary)


@pytest.mark.parametrize("cmd", cli.COMMANDS, ids=lambda c: " ".join(c.path))
def test_a_generated_commands_parameters_are_its_use_cases(cmd: Any) -> None:
    """Every parameter of the use case is an argument or option of the command, whose help is
    the parameter's description (the CLI may add to it, e.g. an exit code)."""
    found = helps(command(cmd.path))
    for param in CASES[cmd.case].params:
        assert param.name in found, f"{' '.join(cmd.path)} lacks {param.name}"
        assert found[param.name].startswith(param.description.rstrip(".")), param.name


def test_the_data_check_flag_is_described_by_its_use_case() -> None:
    found = helps(command(("catalog", "validate")))
    assert CASES["catalog_validate_data"].summary in found["with_data"]


def test_training_options_come_from_the_table() -> None:
    found = helps(command(("pipeline", "train")))
    for param in CASES["train_dry_run"].params:  # the same parameters as train_start
        assert found[param.name].startswith(param.description.rstrip("."))
    assert "dry_run" in found


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


ALLOWED = (
    "daedalus.app.",  # the application layer: use cases, settings, errors
    "daedalus.container",  # the composition root
    "daedalus.adapters.cli",
    "daedalus.adapters.jsonrpc.server",  # `daeda serve-api` starts it
    "daedalus.adapters.mcp.server",  # `daeda mcp` starts it
)


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_imports_only_the_application_layer(path: Path) -> None:
    ours = {m for m in _imports(path) if m.split(".")[0] == "daedalus"}
    below = sorted(m for m in ours if not m.startswith(ALLOWED))
    assert below == [], f"{path.name} imports {below}: go through the Application instead"
