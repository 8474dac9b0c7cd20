"""Loading playbooks (sales scripts) from YAML files.

File I/O and YAML live here, outside the workflow sandbox; the result is a validated
`Playbook` the call workflow snapshots. Every problem becomes one line naming the file, the
state and the field (`slot.yaml_models`), so a script author can fix it without a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

from slot.yaml_models import YamlModel, display, field_path
from workflows.script import Playbook

SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class PlaybookError(ValueError):
    """A playbook that cannot be used; the message is one line naming file, state and field."""


def _location(loc: tuple[int | str, ...]) -> str:
    """('states', 'qualify', 'intents', 1, 'next') -> "state 'qualify', field 'intents[1].next'"."""
    parts = loc
    prefix = ""
    if len(parts) >= 2 and parts[0] in ("states", "slots") and isinstance(parts[1], str):
        prefix = f"{'state' if parts[0] == 'states' else 'slot'} '{parts[1]}'"
        parts = parts[2:]
    field = f"field '{field_path(parts)}'" if parts else ""
    return ", ".join(p for p in (prefix, field) if p)


_PLAYBOOK = YamlModel(Playbook, PlaybookError, what="playbook", where=_location)


def parse_playbook(
    text: str, source: str = "<playbook>", default_name: str | None = None
) -> Playbook:
    """Validate YAML text; `source` names the file in error messages."""
    defaults = {"name": default_name} if default_name is not None else None
    return _PLAYBOOK.parse(text, source, defaults)


def load_playbook_file(path: Path | str) -> Playbook:
    return _PLAYBOOK.load(path, {"name": Path(path).stem})


def list_playbooks(folder: Path | str) -> list[str]:
    """Names of the playbooks in `folder` (file names without the suffix), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and _NAME.match(p.stem))


def load_playbook(name: str | Path, folder: Path | str | None = None) -> Playbook:
    """A playbook by bare name from `folder`, or from a file path.

    With a `folder`, a string is only ever a bare name (letters, digits, '_' and '-'), so a
    name taken from a web request cannot reach files outside the folder. Pass a `Path` (or no
    folder) to load a specific file.
    """
    if isinstance(name, Path) or folder is None:
        return load_playbook_file(name)
    folder = Path(folder)
    if not _NAME.match(name):
        raise PlaybookError(
            f"invalid playbook name '{name}': use letters, digits, '_' and '-' (no paths)"
        )
    for suffix in SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return load_playbook_file(path)
    available = ", ".join(list_playbooks(folder)) or "none"
    raise PlaybookError(f"unknown playbook '{name}' in {display(folder)} (available: {available})")
