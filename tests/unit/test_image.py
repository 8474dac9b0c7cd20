"""The image's build context and its BAML client, without a Docker engine.

The context is computed with the Docker SDK's own `.dockerignore` matcher (a port of the
engine's), over the files this checkout tracks plus the local state a developer's machine has.
The Dockerfile's BAML step is then run, as written, on a copy of exactly that context.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from docker.utils.build import exclude_paths

from slot.settings import REPO_ROOT

LOCAL_STATE = [
    ".venv/bin/python",
    ".slot-data/slot.db",
    ".slot-data/recordings/CA123.wav",
    ".slot-data/recordings/eval-calls/booked.wav",
    ".slot-data/qdrant/collection/storage.sqlite",
    "reports/calls.png",
    "reports/turns.json",
    ".git/HEAD",
    "baml_client/__init__.py",
    "recording.wav",
    "simulator/__pycache__/phone.cpython-311.pyc",
    ".env",
    ".env.production",
]


def dockerignore_patterns(root: Path) -> list[str]:
    """The file's patterns as the engine reads them: stripped, no blanks, no comments."""
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def tracked_files() -> list[str]:
    """The checkout's own files: tracked, or new and not ignored by git."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return [name for name in done.stdout.decode().split("\0") if name]


def checkout_with_local_state(folder: Path) -> Path:
    """A copy of the tracked files, with the local state a developer's checkout accumulates."""
    for name in tracked_files():
        source = REPO_ROOT / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for name in LOCAL_STATE:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("local state\n")
    return folder


def image_context(checkout: Path) -> set[str]:
    """The files `COPY . .` sees (directories left out)."""
    included = exclude_paths(str(checkout), dockerignore_patterns(checkout))
    return {path for path in included if (checkout / path).is_file()}


def test_the_context_carries_no_local_state_and_every_tracked_file(tmp_path: Path) -> None:
    checkout = checkout_with_local_state(tmp_path / "checkout")
    context = image_context(checkout)
    assert sorted(set(LOCAL_STATE) & context) == []
    assert set(tracked_files()) <= context


def test_the_matcher_is_the_engines(tmp_path: Path) -> None:
    """A directory pattern drops all beneath it; `**` reaches any depth; `!` lets one back."""
    for name in ("keep.py", "data/a.db", "deep/x/y.wav", "deep/x/z.py", "data/keep.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".dockerignore").write_text("# comment\n\ndata\n**/*.wav\n!data/keep.md\n")
    assert image_context(tmp_path) == {".dockerignore", "keep.py", "deep/x/z.py", "data/keep.md"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_image_generates_the_baml_client_from_its_own_context(tmp_path: Path) -> None:
    instructions = dockerfile_instructions()
    copy_all = instructions.index(("COPY", ". ."))
    steps = [
        (index, argument)
        for index, (keyword, argument) in enumerate(instructions)
        if keyword == "RUN" and "slot.llm.generate" in argument
    ]
    assert len(steps) == 1, "the Dockerfile has no (or more than one) BAML generate step"
    index, command = steps[0]
    assert index > copy_all, "the BAML client is generated before the sources are copied in"

    checkout = checkout_with_local_state(tmp_path / "checkout")
    context = tmp_path / "context"
    for name in image_context(checkout):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout / name, context / name)
    assert not (context / "baml_client").exists()
    venv_bin = str(Path(sys.executable).parent)
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=context,
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for generated in ("__init__.py", "async_client.py", "type_builder.py", "inlinedbaml.py"):
        assert (context / "baml_client" / generated).is_file(), generated
