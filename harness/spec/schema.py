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
import stat
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")
N = TypeVar("N", int, float)

MAX_SPEC_BYTES = 256_000  # shipped specs are ~4 kB; PyYAML takes ~2 s on this much
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,30}")  # whole value: use fullmatch
MAX_INT = 10**9
MAX_DEPTH = 20  # specs nest about 5 deep; the YAML composer recurses per level
MAX_NUMBER_CHARS = 32
MAX_TOKEN_CHARS = 64  # addresses, networks, port ranges
YAML_TAG = "tag:yaml.org,2002:"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
# Plain decimal only: YAML 1.1 also reads 010 as 8, 0x1F, 0b11 and 1:30 (= 90).
DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)", re.ASCII)
DECIMAL_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?",
                           re.ASCII)
EXPONENT_WITHOUT_DOT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+", re.ASCII)


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
            if not (key and key.isprintable() and len(key) <= 40):
                key = shorten(repr(key))  # no terminal escapes or megabyte keys in messages
            path = f"{self.path}.{key}" if self.path else key
        return Located(node, path, self.file)


ScalarParser = Callable[[str], Any]
SCALAR_PARSERS: dict[type, ScalarParser] = {}


def register_scalar(kind: type, parser: ScalarParser) -> None:
    """Teach the schema a scalar type parsed from text (e.g. an IP network)."""
    SCALAR_PARSERS[kind] = parser


def shorten(text: str, limit: int = 60) -> str:
    """User text for an error message, cut to a readable length."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_name(value: str) -> None:
    """Names become parts of file paths and process names: keep them tame."""
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{shorten(repr(value))} is not a valid name (lower-case letters, digits and '-', "
            "starting with a letter, at most 31 characters)"
        )


def has_top_level_key(path: Path, key: str) -> bool:
    """Whether the regular file `path` has a line starting `key:` in its first
    MAX_SPEC_BYTES (how `callwall validate` tells a spec's kind apart)."""
    try:  # only a regular file, and no more of it than a spec may hold
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with path.open("rb") as handle:
            head = handle.read(MAX_SPEC_BYTES)
    except (OSError, ValueError):
        return False
    prefix = key.encode() + b":"
    return any(line.startswith(prefix) for line in head.splitlines())


def load_yaml_node(path: Path) -> Located:
    """Read and compose one YAML file, refusing special files, oversized files and
    text that is not UTF-8; `compose_text` refuses the rest."""
    shown = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(shown, None, "", "not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise _oversized(shown, info.st_size)
        with path.open("rb") as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)  # the file may have grown since stat
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecError(shown, None, "", f"cannot read: {reason}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise _oversized(shown, len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(shown, line, "", f"not UTF-8 text ({exc.reason})") from None
    return compose_text(text, shown)


def _oversized(shown: str, size: int) -> SpecError:
    return SpecError(shown, None, "", f"file is {size} bytes or more; specs are limited to "
                     f"{MAX_SPEC_BYTES} bytes")


def compose_text(text: str, shown: str) -> Located:
    try:
        loader = _SpecLoader(text, shown)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = ", ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(shown, line, "", f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(shown, line, "", f"character U+{char:04X} is not allowed in YAML") \
            from None
    except yaml.YAMLError as exc:
        raise SpecError(shown, None, "", f"YAML error: {exc}") from None
    if node is None:
        raise SpecError(shown, 1, "", "the file is empty")
    return Located(node, "", shown)


class _SpecLoader(yaml.SafeLoader):
    """A safe loader that refuses, as the composer reaches them, what a spec never
    needs: anchors and aliases (a small file could expand without bound), explicit
    tags (!!python/object and friends), nesting deeper than MAX_DEPTH (the composer
    recurses) and a second document."""

    def __init__(self, text: str, shown: str) -> None:
        super().__init__(text)
        self.shown = shown
        self.depth = 0
        self.documents = 0

    def get_event(self) -> Any:
        event = super().get_event()
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise SpecError(self.shown, line, "", "YAML anchors and aliases are not allowed in "
                            "specs")
        tag = getattr(event, "tag", None)
        if tag is not None:
            shown_tag = shorten(tag.replace(YAML_TAG, "!!"))
            raise SpecError(self.shown, line, "", f"YAML tags ({shown_tag}) are not allowed in "
                            "specs")
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise SpecError(self.shown, line, "", "a second YAML document starts here; a "
                                "spec is one document")
        elif isinstance(event, yaml.CollectionStartEvent):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise SpecError(self.shown, line, "", f"lists and mappings nest more than "
                                f"{MAX_DEPTH} deep here; specs need far fewer levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            self.depth -= 1
        return event


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
    if kind in SCALAR_PARSERS:  # before dataclasses: a scalar type may be one (PortRange)
        return _parse_scalar(loc, kind)
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
    raise loc.error(f"expected one of {', '.join(map(str, choices))}; got {shorten(repr(raw))}")


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
            raise loc.error(f"expected true or false, got {shorten(repr(raw))}")
        return raw.lower() in ("true", "yes", "on")
    if kind is int:
        return _parse_int(loc, raw)
    if kind is float:
        return _parse_float(loc, raw)
    if kind is str:
        if tag not in ("tag:yaml.org,2002:str",):
            hint = "" if _is_null(loc.node) else " (quote it to make it a string)"
            raise loc.error(f"expected a string, got {_describe(loc.node)} "
                            f"{shorten(repr(raw))}{hint}")
        return raw
    parser = SCALAR_PARSERS.get(kind)
    if parser is None:
        raise TypeError(f"schema type {kind} is not supported")
    if len(raw) > MAX_TOKEN_CHARS:
        raise loc.error(f"{shorten(repr(raw))} is too long for a {kind.__name__} "
                        f"(at most {MAX_TOKEN_CHARS} characters)")
    try:
        return parser(raw)
    except ValueError as exc:
        raise loc.error(str(exc)) from None


def _parse_int(loc: Located, raw: str) -> int:
    if loc.node.tag != INT_TAG:
        raise loc.error(f"expected an integer, got {shorten(repr(raw))}")
    return _in_range(loc, raw, int(_decimal_text(loc, raw, DECIMAL_INT)))


def _parse_float(loc: Located, raw: str) -> float:
    if loc.node.tag not in (INT_TAG, FLOAT_TAG):
        hint = ""
        if EXPONENT_WITHOUT_DOT.fullmatch(raw):
            hint = " (YAML reads an exponent without a dot as text: write e.g. 1.0e+3)"
        raise loc.error(f"expected a number, got {shorten(repr(raw))}{hint}")
    if raw.lstrip("+-").lower() in (".inf", ".nan"):
        raise loc.error(f"{raw} is not a finite number")
    pattern = DECIMAL_INT if loc.node.tag == INT_TAG else DECIMAL_FLOAT
    return _in_range(loc, raw, float(_decimal_text(loc, raw, pattern)))


def _decimal_text(loc: Located, raw: str, pattern: re.Pattern[str]) -> str:
    """The number's text for int() or float(), once it is short and plain decimal."""
    if len(raw) > MAX_NUMBER_CHARS:
        raise loc.error(f"{shorten(raw, 20)} is too long for a number (at most "
                        f"{MAX_NUMBER_CHARS} characters)")
    if not pattern.fullmatch(raw):
        raise loc.error(f"{raw!r} is not a plain decimal number (YAML's octal 010, hex 0x1f, "
                        "binary 0b1 and sexagesimal 1:30 are not accepted)")
    return raw.replace("_", "")


def _in_range(loc: Located, raw: str, value: N) -> N:
    if not abs(value) <= MAX_INT:  # also false for NaN
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
