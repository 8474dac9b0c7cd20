"""YAML files into validated pydantic models: the one loader for playbooks and caller personas.

People write these files by hand, so every problem becomes one line that names the file and the
field (`personas/x.yaml: lines[2].say: ...`), never a traceback. YAML 1.1's surprise is turned
off: `yes`, `no`, `on` and `off` stay strings (an intent called `yes`, a caller who says "no"),
only `true` and `false` are booleans.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
Location = Callable[[tuple[int | str, ...]], str]
"""Where in the document a validation error is, for the message (empty: the top level)."""

_VALUE_ERROR_PREFIX = "Value error, "


class YamlModelError(ValueError):
    """A file that cannot be used; the message is one line naming the file and the field."""


class _Loader(yaml.SafeLoader):
    """Safe YAML where only true/false are booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), [_first]
    )


def display(path: Path) -> str:
    """`path` relative to the working directory when it is under it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def field_path(loc: tuple[int | str, ...]) -> str:
    """('lines', 2, 'say') -> 'lines[2].say'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def describe(error: ValidationError, where: Location = field_path) -> str:
    """The first problem as "where: message", and how many more there are."""
    issues = error.errors(include_url=False)
    first = issues[0]
    message = str(first["msg"]).removeprefix(_VALUE_ERROR_PREFIX)
    loc = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
    located = where(loc)
    line = f"{located}: {message}" if located else message
    if len(issues) > 1:
        line += f" (and {len(issues) - 1} more problem{'s' if len(issues) > 2 else ''})"
    return line


@dataclass(frozen=True)
class YamlModel(Generic[Model]):
    """How one kind of file is read: its model, its error type, its name in messages (`what`)
    and how a field's location is told (`where`)."""

    model: type[Model]
    error: type[ValueError] = YamlModelError
    what: str = "document"
    where: Location = field_path

    def validate(
        self, data: object, source: str, defaults: Mapping[str, Any] | None = None
    ) -> Model:
        """Parsed YAML into the model; `defaults` fill fields the document leaves out."""
        if not isinstance(data, dict):
            raise self.error(f"{source}: expected a mapping of {self.what} fields at the top level")
        try:
            return self.model.model_validate({**(defaults or {}), **data})
        except ValidationError as invalid:
            raise self.error(f"{source}: {describe(invalid, self.where)}") from None

    def parse(self, text: str, source: str, defaults: Mapping[str, Any] | None = None) -> Model:
        """YAML text into the model; `source` names the text in error messages."""
        try:
            data = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as invalid:
            mark = getattr(invalid, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(invalid, "problem", None) or str(invalid).splitlines()[0]
            raise self.error(f"{source}: invalid YAML{at}: {problem}") from None
        return self.validate(data, source, defaults)

    def load(self, path: Path | str, defaults: Mapping[str, Any] | None = None) -> Model:
        """A YAML file into the model; every problem is one error naming the file and field."""
        path = Path(path)
        source = display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as unreadable:
            raise self.error(
                f"{source}: cannot read {self.what} file ({unreadable.strerror})"
            ) from None
        return self.parse(text, source, defaults)
