"""Loading playbooks (sales scripts) from YAML files.

File I/O and YAML live here, outside the workflow sandbox; the result is a validated
`Playbook` the call workflow snapshots. Every problem becomes one line naming the file, the
state and the field, so a script author can fix it without reading a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from workflows.script import Playbook

SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VALUE_ERROR_PREFIX = "Value error, "


class _Loader(yaml.SafeLoader):
    """YAML 1.1 without its surprise: `yes`, `no`, `on`, `off` stay strings (intent names)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), [_first]
    )


class PlaybookError(ValueError):
    """A playbook that cannot be used; the message is one line naming file, state and field."""


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _field_path(parts: list[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _location(loc: tuple[int | str, ...]) -> str:
    """('states', 'qualify', 'intents', 1, 'next') -> "state 'qualify', field 'intents[1].next'"."""
    parts = list(loc)
    prefix = ""
    if len(parts) >= 2 and parts[0] in ("states", "slots") and isinstance(parts[1], str):
        prefix = f"{'state' if parts[0] == 'states' else 'slot'} '{parts[1]}'"
        parts = parts[2:]
    field = f"field '{_field_path(parts)}'" if parts else ""
    return ", ".join(p for p in (prefix, field) if p)


def _describe(error: ValidationError) -> str:
    issues = error.errors(include_url=False)
    first = issues[0]
    message = str(first["msg"]).removeprefix(_VALUE_ERROR_PREFIX)
    where = _location(tuple(first["loc"]))
    line = f"{where}: {message}" if where else message
    if len(issues) > 1:
        line += f" (and {len(issues) - 1} more problem{'s' if len(issues) > 2 else ''})"
    return line


def parse_playbook(
    text: str, source: str = "<playbook>", default_name: str | None = None
) -> Playbook:
    """Validate YAML text; `source` names the file in error messages."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PlaybookError(f"{source}: invalid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: expected a mapping of playbook fields at the top level")
    if default_name is not None:
        data.setdefault("name", default_name)
    try:
        return Playbook.model_validate(data)
    except ValidationError as error:
        raise PlaybookError(f"{source}: {_describe(error)}") from None


def load_playbook_file(path: Path | str) -> Playbook:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PlaybookError(f"{_display(path)}: cannot read: {error.strerror}") from None
    return parse_playbook(text, _display(path), default_name=path.stem)


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
    raise PlaybookError(f"unknown playbook '{name}' in {_display(folder)} (available: {available})")
