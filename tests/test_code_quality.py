"""The project's own standards, checked on every run: ruff clean and mypy (strict) clean."""

import subprocess
import sys

from slot.settings import REPO_ROOT


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing() -> None:
    lint = run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    style = run("ruff", "format", "--check", ".")
    assert style.returncode == 0, style.stdout + style.stderr


def test_mypy_strict_finds_nothing() -> None:
    typing = run("mypy", ".")
    assert typing.returncode == 0, typing.stdout + typing.stderr
