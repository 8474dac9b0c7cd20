"""The dependency direction is one way: the product's cores do not import the tools around them.

Workflows and activities (what the worker runs) may use `slot.settings` (and the secrets read
from it, `slot.credentials`), the database's schema check (`slot.database`) and the live event
streams (`slot.live_events`), and nothing else of the `slot` package (CLI, dev stack, demo,
Temporal client helpers); the media edge never imports the CLI, the dev stack, the demo or the
dev-server launcher. Imports are read with `ast`, including those inside functions, so a lazy
import does not slip through.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from slot.settings import REPO_ROOT

WORKER_CODE_MAY_IMPORT = frozenset(
    {"slot.settings", "slot.credentials", "slot.database", "slot.live_events"}
)
EDGE_MUST_NOT_IMPORT = ("slot.cli", "slot.devstack", "slot.demo")
DEV_SERVER_NAMES = frozenset({"TemporalDevServer", "TemporalDevServerError", "temporal_binary"})


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import statement in a file."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO_ROOT / folder).rglob("*.py"))


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", sources("workflows", "activities"), ids=lambda p: p.name)
def test_workflows_and_activities_import_only_settings_from_slot(path: Path) -> None:
    for module, names in imports(path):
        if module == "slot":
            modules = [f"slot.{name}" for name in names]
        elif is_within(module, "slot"):
            modules = [module]
        else:
            continue
        for imported in modules:
            assert imported in WORKER_CODE_MAY_IMPORT, f"{path.name} imports {imported}"


@pytest.mark.parametrize("path", sources("media_edge"), ids=lambda p: p.name)
def test_the_edge_imports_no_cli_dev_stack_or_dev_server(path: Path) -> None:
    for module, names in imports(path):
        for forbidden in EDGE_MUST_NOT_IMPORT:
            assert not is_within(module, forbidden), f"{path.name} imports {module}"
        if module == "slot":
            assert not {f"slot.{n}" for n in names} & set(EDGE_MUST_NOT_IMPORT), path.name
        if module == "slot.temporal":
            assert not DEV_SERVER_NAMES & set(names), f"{path.name} imports the dev server"


TEMPORAL_CALLS = ("slot.temporal", "temporalio.service")
"""Where Temporal is called from (client helpers, RPC errors); a `Client` type name is not."""


@pytest.mark.parametrize(
    "path",
    [p for p in sources("media_edge") if p.name != "workflow_link.py"],
    ids=lambda p: p.name,
)
def test_only_the_workflow_link_talks_to_temporal_from_the_edge(path: Path) -> None:
    for module, _ in imports(path):
        for forbidden in TEMPORAL_CALLS:
            assert not is_within(module, forbidden), f"{path.name} imports {module}"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from slot.devstack import DevStack\n    import slot.cli\n")
    assert imports(sample) == [("slot.devstack", ["DevStack"]), ("slot.cli", [])]
