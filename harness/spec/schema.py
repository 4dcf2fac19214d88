"""One schema mechanism for every spec: typed dataclasses read from located YAML.

A spec type is a frozen dataclass. Its type hints are the schema: `parse_node`
walks a composed YAML node tree (which keeps line numbers) and builds the
dataclass, so every error names the file, the line and the field path.

Supported field types: str, int, float, bool, Literal[...], list[T],
dict[str, T], T | None, nested spec dataclasses, and any type registered in
`SCALAR_PARSERS` (e.g. IPv4 networks). Field metadata may carry `check`, a
callable that raises ValueError with a message for a bad value.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")

MAX_SPEC_BYTES = 1_000_000
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
MAX_INT = 10**9


class SpecError(Exception):
    """A bad spec: where it is (file, line) and which field is wrong."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


@dataclasses.dataclass(frozen=True)
class Located:
    """A YAML node with the path that led to it, for error messages."""

    node: yaml.Node
    path: str
    file: str

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def error(self, message: str) -> SpecError:
        return SpecError(self.file, self.line, self.path, message)

    def child(self, node: yaml.Node, key: str | int) -> Located:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return Located(node, path, self.file)


ScalarParser = Callable[[str], Any]
SCALAR_PARSERS: dict[type, ScalarParser] = {}


def register_scalar(kind: type, parser: ScalarParser) -> None:
    """Teach the schema a scalar type parsed from text (e.g. an IP network)."""
    SCALAR_PARSERS[kind] = parser


def check_name(value: str) -> None:
    """Names become parts of file paths and process names: keep them tame."""
    if not NAME_PATTERN.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lower-case letters, digits and '-', "
            "starting with a letter, at most 31 characters)"
        )


def load_yaml_node(path: Path) -> Located:
    """Read and compose one YAML file, refusing oversized or multi-document input."""
    shown = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SpecError(shown, None, "", f"cannot read: {exc.strerror}") from None
    if size > MAX_SPEC_BYTES:
        raise SpecError(shown, None, "", f"file is {size} bytes; specs are limited to "
                        f"{MAX_SPEC_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(shown, None, "", f"not UTF-8 text ({exc.reason})") from None
    return compose_text(text, shown)


def compose_text(text: str, shown: str) -> Located:
    try:
        _refuse_aliases(text, shown)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(shown, line, "", f"YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(shown, None, "", f"YAML error: {exc}") from None
    if node is None:
        raise SpecError(shown, 1, "", "the file is empty")
    return Located(node, "", shown)


def _refuse_aliases(text: str, shown: str) -> None:
    """Anchors and aliases let a small file expand without bound: specs do without."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1 if event.start_mark else None
            raise SpecError(shown, line, "", "YAML anchors and aliases are not allowed in specs")


def parse_node(loc: Located, kind: Any) -> Any:
    """Build a value of type `kind` from a located YAML node, or raise SpecError."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        return _parse_optional(loc, kind)
    if origin is Literal:
        return _parse_literal(loc, get_args(kind))
    if origin is list:
        return _parse_list(loc, get_args(kind)[0])
    if origin is dict:
        return _parse_dict(loc, get_args(kind)[1])
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return parse_dataclass(loc, kind)
    return _parse_scalar(loc, kind)


def parse_dataclass(loc: Located, cls: type[T]) -> T:
    mapping = _as_mapping(loc)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, (key_node, value_node) in mapping.items():
        if key not in fields:
            raise loc.child(key_node, key).error(
                f"unknown field; expected one of: {', '.join(sorted(fields))}"
            )
        values[key] = _parse_field(loc.child(value_node, key), fields[key], hints[key])
    for name, field in fields.items():
        if name not in values and _is_required(field):
            raise loc.error(f"missing required field '{name}'")
    try:
        return cls(**values)
    except ValueError as exc:
        raise loc.error(str(exc)) from None


def _parse_field(loc: Located, field: dataclasses.Field[Any], kind: Any) -> Any:
    value = parse_node(loc, kind)
    check = field.metadata.get("check")
    if check is not None and value is not None:
        try:
            check(value)
        except ValueError as exc:
            raise loc.error(str(exc)) from None
    return value


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )


def _as_mapping(loc: Located) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(loc.node, yaml.MappingNode):
        raise loc.error(f"expected a mapping, got {_describe(loc.node)}")
    result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in loc.node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise loc.child(key_node, "?").error("mapping keys must be plain strings")
        key = str(key_node.value)
        if key in result:
            raise loc.child(key_node, key).error("duplicate key")
        result[key] = (key_node, value_node)
    return result


def _parse_optional(loc: Located, kind: Any) -> Any:
    members = [m for m in get_args(kind) if m is not type(None)]
    if _is_null(loc.node):
        return None
    if len(members) != 1:
        raise TypeError(f"schema type {kind} is not supported")
    return parse_node(loc, members[0])


def _parse_literal(loc: Located, choices: tuple[Any, ...]) -> Any:
    raw = _scalar_text(loc)
    for choice in choices:
        if raw == str(choice):
            return choice
    raise loc.error(f"expected one of {', '.join(map(str, choices))}; got {raw!r}")


def _parse_list(loc: Located, item_kind: Any) -> list[Any]:
    if not isinstance(loc.node, yaml.SequenceNode):
        raise loc.error(f"expected a list, got {_describe(loc.node)}")
    return [parse_node(loc.child(n, i), item_kind) for i, n in enumerate(loc.node.value)]


def _parse_dict(loc: Located, value_kind: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, (key_node, value_node) in _as_mapping(loc).items():
        try:
            check_name(key)
        except ValueError as exc:
            raise loc.child(key_node, key).error(str(exc)) from None
        result[key] = parse_node(loc.child(value_node, key), value_kind)
    return result


def _parse_scalar(loc: Located, kind: Any) -> Any:
    raw = _scalar_text(loc)
    tag = loc.node.tag
    if kind is bool:
        if tag != "tag:yaml.org,2002:bool":
            raise loc.error(f"expected true or false, got {raw!r}")
        return raw.lower() in ("true", "yes", "on")
    if kind is int:
        return _parse_int(loc, raw)
    if kind is float:
        return _parse_float(loc, raw)
    if kind is str:
        if tag not in ("tag:yaml.org,2002:str",):
            raise loc.error(f"expected a string, got {_describe(loc.node)} {raw!r}")
        return raw
    parser = SCALAR_PARSERS.get(kind)
    if parser is None:
        raise TypeError(f"schema type {kind} is not supported")
    try:
        return parser(raw)
    except ValueError as exc:
        raise loc.error(str(exc)) from None


def _parse_int(loc: Located, raw: str) -> int:
    if loc.node.tag != "tag:yaml.org,2002:int":
        raise loc.error(f"expected an integer, got {raw!r}")
    value = int(raw.replace("_", ""), 0)
    if abs(value) > MAX_INT:
        raise loc.error(f"{value} is out of range (at most {MAX_INT})")
    return value


def _parse_float(loc: Located, raw: str) -> float:
    if loc.node.tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        raise loc.error(f"expected a number, got {raw!r}")
    value = float(raw.replace("_", ""))
    if not (abs(value) <= MAX_INT):
        raise loc.error(f"{raw} is out of range (at most {MAX_INT})")
    return value


def _scalar_text(loc: Located) -> str:
    if not isinstance(loc.node, yaml.ScalarNode):
        raise loc.error(f"expected a single value, got {_describe(loc.node)}")
    return str(loc.node.value)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "nothing (null)"
    return "a " + node.tag.rsplit(":", 1)[-1]


def locate(loc: Located, *path: str | int) -> Located:
    """The located node at `path` below `loc` (as far as it exists), for errors
    found after parsing, such as a route whose gateway is on no link."""
    current = loc
    for step in path:
        node = current.node
        if isinstance(step, int) and isinstance(node, yaml.SequenceNode):
            if step >= len(node.value):
                return current
            current = current.child(node.value[step], step)
        elif isinstance(step, str) and isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if getattr(k, "value", None) == step]
            if not match:
                return current
            current = current.child(match[0], step)
        else:
            return current
    return current
