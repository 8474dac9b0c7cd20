"""The product never depends on its tools: dependencies point one way.

The phone simulator, the evaluations and the tests may import the product; the product
(`media_edge/`, `workflows/`, `activities/`, `worker.py` and the libraries in `slot/`) must not
import them, nor the command line and dev-stack code that runs them. Only the `slot` command
line (`slot/cli.py`, lazily) and the demo it runs (`slot/demo.py`, a simulated call) may reach
the tools. Checked on the source with `ast`, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("simulator", "evals", "tests")
APPLICATION = ("slot.cli", "slot.devstack", "slot.demo")
PRODUCT = ["media_edge", "workflows", "activities", "worker.py"]
SLOT_APPLICATION = {"cli.py", "demo.py", "devstack.py", "campaign_run.py"}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _reaches(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in packages)


def _files(entry: str) -> list[Path]:
    path = ROOT / entry
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _product_files() -> list[Path]:
    files = [file for entry in PRODUCT for file in _files(entry)]
    files += [
        file
        for file in _files("slot")
        if not (file.parent == ROOT / "slot" and file.name in SLOT_APPLICATION)
    ]
    return files


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_product_code_imports_no_tool_and_no_command_line(path: Path) -> None:
    wrong = sorted(name for name in _imports(path) if _reaches(name, TOOLS + APPLICATION))
    assert wrong == [], f"{path.relative_to(ROOT)} imports {wrong}"


def test_the_dev_stack_runs_tools_without_importing_them() -> None:
    wrong = sorted(name for name in _imports(ROOT / "slot/devstack.py") if _reaches(name, TOOLS))
    assert wrong == []


def test_the_check_sees_tool_imports_anywhere_in_a_module(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "import simulator.phone\n"
        "def later():\n"
        "    from evals import turns\n"
        "    from tests.conftest import free_port\n"
        "from simulation import x\n",
        encoding="utf-8",
    )
    found = {name for name in _imports(module) if _reaches(name, TOOLS)}
    assert found == {
        "simulator.phone",
        "evals",
        "evals.turns",
        "tests.conftest",
        "tests.conftest.free_port",
    }


def test_tools_are_top_level_packages_not_inside_the_product() -> None:
    for tool in ("simulator", "evals"):
        assert (ROOT / tool / "__init__.py").is_file()
        assert not (ROOT / "slot" / tool).exists()
    for double in ("openai_server.py", "demo_server.py"):
        assert not (ROOT / "slot" / "llm" / double).exists()
