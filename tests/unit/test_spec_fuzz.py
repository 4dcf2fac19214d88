"""Fuzzing the spec loaders: whatever the bytes, a loader returns a valid spec or
raises one SpecError naming the file given, a line inside it and a message;
never any other exception. Valid results must also survive what `callwall`
does with them next (binding a topology, compiling a policy).

5,300 hypothesis cases in all (the `fuzz(n)` of each test), about 30 s of CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import typing
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import paths
from harness.censor.compiler import CompileError, bindings_for, compile_policy
from harness.spec.descriptor import profiles as descriptor_profiles
from harness.spec.descriptor import strategies as descriptor_strategies
from harness.spec.names import ALL_STRATEGIES as STRATEGIES
from harness.spec.names import PROFILES
from harness.spec.policy import DnsName, Policy, PortRange, load_policy
from harness.spec.schema import MAX_INT, SpecError, check_name, compose_text, parse_dataclass
from harness.spec.topology import Topology, load_topology

LoadSpec = Callable[[Path], Any]


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings: `examples` cases, no deadline, no example database
    (nothing written to the work tree but Hypothesis' self-ignoring cache)."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


DEFAULT_TOPOLOGY = load_topology(paths.TOPOLOGIES / "ru-to-abroad.yaml")
SHIPPED_POLICIES = [load_policy(p) for p in paths.all_policies()]
TOPOLOGY_TEXTS = [p.read_text() for p in sorted(paths.TOPOLOGIES.glob("*.yaml"))]
POLICY_TEXTS = [p.read_text() for p in paths.all_policies()]
TOPOLOGY_DOCUMENTS = [yaml.safe_load(text) for text in TOPOLOGY_TEXTS]
POLICY_DOCUMENTS = [yaml.safe_load(text) for text in POLICY_TEXTS]


# ---------------------------------------------------------------- the property

@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "spec.yaml"


def load_or_error(load: LoadSpec, path: Path, data: bytes) -> Any:
    """Write `data`, load it; return the spec, or None after checking the SpecError."""
    path.write_bytes(data)
    try:
        return load(path)
    except SpecError as error:
        check_error(error, str(path), data)
        return None


def check_error(error: SpecError, shown: str, data: bytes) -> None:
    lines = len(data.decode("utf-8", "replace").splitlines())
    assert error.file == shown
    assert error.line is None or 1 <= error.line <= lines + 1, (error.line, lines, str(error))
    assert error.message.strip()
    assert len(str(error)) < 4000
    assert str(error).startswith(f"{shown}:")


def load_topology_checked(path: Path, data: bytes) -> None:
    topology = load_or_error(load_topology, path, data)
    if topology is not None:
        revalidate_topology(topology)


def load_policy_checked(path: Path, data: bytes, bound: bool) -> None:
    known = DEFAULT_TOPOLOGY.sets.keys() if bound else None
    policy = load_or_error(lambda p: load_policy(p, known), path, data)
    if policy is not None:
        revalidate_policy(policy)


# Independent of the loaders' own pattern: names become file and process names.
NAME = re.compile(r"[a-z][a-z0-9-]{0,30}", re.ASCII)


def check_values(spec: Any) -> None:
    """What a loaded spec promises: every field passes its check again, names
    are tame, numbers are finite and in range, port ranges are ports."""
    if isinstance(spec, PortRange):
        assert 1 <= spec.first <= spec.last <= 65535, spec
        return
    if isinstance(spec, (list, dict)):
        for item in spec.values() if isinstance(spec, dict) else spec:
            check_values(item)
        return
    if isinstance(spec, bool) or not dataclasses.is_dataclass(spec):
        assert not isinstance(spec, (int, float)) or (math.isfinite(spec) and abs(spec) <= MAX_INT)
        return
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        check = field.metadata.get("check")
        if check is not None and value is not None:
            check(value)
            if check is check_name:
                assert NAME.fullmatch(value), value
        check_values(value)


def revalidate_topology(topology: Topology) -> None:
    check_values(topology)
    for name in [*topology.hosts, *topology.sets]:
        assert NAME.fullmatch(name), name
    for host in topology.hosts:
        assert topology.interfaces(host)
        topology.address_of(host)
    bindings = bindings_for(topology)
    for policy in SHIPPED_POLICIES:
        try:
            compile_policy(policy, bindings)
        except CompileError:
            pass


def revalidate_policy(policy: Policy) -> None:
    check_values(policy)
    for rule in policy.rules:
        for name in [rule.id, *rule.match.sets]:
            assert NAME.fullmatch(name), name
    # Shipped policies may name endpoint descriptors (endpoints/) too.
    assert set(policy.expect) <= set(descriptor_profiles())
    assert all(set(by) <= set(descriptor_strategies()) for by in policy.expect.values())
    try:
        plan = compile_policy(policy, bindings_for(DEFAULT_TOPOLOGY))
    except CompileError:
        return
    assert plan.policy == policy.name
    assert len(plan.explanations) == len(policy.rules)


# ---------------------------------------------------------------- raw input

YAML_TOKENS = [
    "name", "hosts", "links", "rules", "role", "ip", "a", "b", "id", "sets", "action", "kind",
    ": ", ":", "\n", "  ", "    ", "- ", "-", "[", "]", "{", "}", ", ", "#", "&a ", "*a", "!!",
    "!!python/object:os.system ", "!foo ", "? ", "|\n", ">-\n", "'", '"', "\\", "\t", "\x00",
    "\r", "\r\n", "\ufeff", "\u2028", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
    "~", "null", "yes", "no", "on", "0x1F", "017", "0o17", "1_000", "1:30", ".inf", "-.inf",
    ".nan", "1e308", "1.0e+308", "9" * 40, "-5", "0", "2024-01-01", "198.18.1.0/24",
    "100.64.1.2/24", "999.1.1.1", "default", "$(id)", "`id`", "; rm -rf /", "../../etc",
    "<<", "=", "drop", "police", "udp", "caller", "relays", "é", "😀",
]


def token_text() -> st.SearchStrategy[str]:
    tokens = st.lists(st.sampled_from(YAML_TOKENS) | st.text(max_size=3), max_size=60)
    # Deep nesting, one level a line (one long line makes PyYAML's scanner slow).
    nesting = st.tuples(st.sampled_from(["[\n", "{a:\n", "- ", "[{x:\n", "- [\n"]),
                        st.integers(15, 2000)).map(lambda t: "x:\n" + t[0] * t[1])
    return st.one_of(*[tokens.map("".join)] * 19, nesting)


@fuzz(1200)
@given(data=st.binary(max_size=400))
def test_random_bytes(spec_file: Path, data: bytes) -> None:
    load_topology_checked(spec_file, data)
    load_policy_checked(spec_file, data, bound=False)


@fuzz(1200)
@given(text=token_text() | st.text(max_size=200))
def test_random_yaml_like_text(spec_file: Path, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    load_topology_checked(spec_file, data)
    load_policy_checked(spec_file, data, bound=True)


@fuzz(1200)
@given(text=token_text() | st.text(max_size=200))
def test_compose_text_directly(text: str) -> None:
    """compose_text takes any str, even lone surrogates and NULs."""
    try:
        loc = compose_text(text, "<fuzz>")
    except SpecError as error:
        check_error(error, "<fuzz>", text.encode("utf-8", "surrogatepass"))
        return
    assert loc.file == "<fuzz>" and loc.line >= 1


# ---------------------------------------------------------------- random YAML documents

def field_names(kind: Any, seen: set[Any] | None = None) -> set[str]:
    """Every field name and literal choice in a spec type, to aim random keys."""
    seen = set() if seen is None else seen
    if kind in seen:
        return set()
    seen.add(kind)
    words: set[str] = set()
    if get_origin(kind) is Literal:
        return {str(c) for c in get_args(kind)}
    for arg in get_args(kind):
        words |= field_names(arg, seen)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        for name, hint in typing.get_type_hints(kind).items():
            words.add(name)
            words |= field_names(hint, seen)
    return words


SPEC_WORDS = sorted(field_names(Topology) | field_names(Policy)
                    | set(DEFAULT_TOPOLOGY.hosts) | set(DEFAULT_TOPOLOGY.sets) | set(STRATEGIES))
ODD_STRINGS = ["x; rm -rf /", "$(id)", "`id`", "../../etc", "a\x00b", "a\nb", "\x1b[2J",
               "relays\n", "caller\n", "turn-tcp\n", "x" * 32, "A",
               "x" * 300, "", " ", "198.18.1.0/24", "100.64.1.2/24", "198.18.0.1", "3478-3497",
               "default", "0x1F", "1:30", ".inf"]
# Plain YAML scalars that safe_dump would quote; `dump` splices them in unquoted.
ODD_PLAIN = ["017", "0x1F", "0b11", "0b_", "0o17", "1:30", "1:30.5", "1_000", "+5", "-0", "-5",
             ".inf", "-.inf", ".nan", ".NaN", "1e308", "1.0e+308", "1.0e+999", "9" * 40,
             "9" * 5000, "yes", "No", "on", "~", "2024-01-01", "1.5", "1_0.5", "!!int abc",
             "!!float x", "!!bool maybe", "!!str 5", "!!python/name:os.system", "=", "<<"]
RAW = st.sampled_from(ODD_PLAIN).map(lambda v: f"@@{v}@@")
SCALARS = st.one_of(
    RAW, st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 65535, 65536, 10**9, 10**9 + 1, 10**30, 10**400]),
    st.floats(), st.text(max_size=12),
    st.sampled_from(SPEC_WORDS + ODD_STRINGS),
)
KEYS = st.one_of(st.sampled_from(SPEC_WORDS + ODD_STRINGS), st.text(max_size=8), st.integers(),
                 st.none())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=16,
)


FLOW = st.sampled_from([False, None, True])  # block style, mixed, flow style


class Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # hypothesis may share objects; the loaders refuse aliases


def dump(document: Any, flow: bool | None) -> bytes:
    text = yaml.dump(document, Dumper=Dumper, sort_keys=False, default_flow_style=flow,
                     allow_unicode=True, width=10**6)
    text = re.sub(r"'@@(.*?)@@'", r"\1", text)
    return text.encode("utf-8", "surrogatepass")


@fuzz(200)
@given(document=st.dictionaries(KEYS, VALUES, max_size=6) | VALUES, flow=FLOW)
def test_random_yaml_documents(spec_file: Path, document: Any, flow: bool | None) -> None:
    data = dump(document, flow)
    load_topology_checked(spec_file, data)
    load_policy_checked(spec_file, data, bound=False)


def spec_types(kind: Any, found: dict[str, type]) -> dict[str, type]:
    if dataclasses.is_dataclass(kind) and isinstance(kind, type) and kind.__name__ not in found:
        found[kind.__name__] = kind
        for hint in typing.get_type_hints(kind).values():
            spec_types(hint, found)
    for arg in get_args(kind):
        spec_types(arg, found)
    return found


SPEC_CLASSES = {**spec_types(Topology, {}), **spec_types(Policy, {})}


@fuzz(150)
@given(kind=st.sampled_from(sorted(SPEC_CLASSES)),
       document=VALUES | st.dictionaries(KEYS, VALUES))
def test_parse_dataclass_directly(kind: str, document: Any) -> None:
    """Every spec type, fed any YAML, parses or raises SpecError."""
    text = dump(document, None).decode("utf-8", "surrogatepass")
    cls = SPEC_CLASSES[kind]
    try:
        parse_dataclass(compose_text(text, "<fuzz>"), cls)
    except SpecError as error:
        check_error(error, "<fuzz>", text.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- schema-shaped documents

NAMES = (st.sampled_from([w for w in SPEC_WORDS if NAME.fullmatch(w)])
         | st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True))
LAB_ADDRESSES = st.ip_addresses(v=4, network="198.18.0.0/22") | st.ip_addresses(v=4)


@st.composite
def interfaces(draw: st.DrawFn) -> str:
    return f"{draw(LAB_ADDRESSES)}/{draw(st.sampled_from([24, 30, 31, 32, 8, 33]))}"


@st.composite
def networks(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from([24, 30, 16, 32, 0]))
    return str(IPv4Network(f"{draw(LAB_ADDRESSES)}/{prefix}", strict=False))


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten."""
    return st.one_of(*[good] * 9, bad)


@st.composite
def port_ranges(draw: st.DrawFn) -> Any:
    port = mostly(st.integers(1, 65535), st.sampled_from([0, 65536]))
    first, last = draw(port), draw(port)
    low, high = sorted((first, last))
    return draw(st.sampled_from([first, f"{first}-{last}", f"{low}-{high}",
                                 {"first": first, "last": last}]))


@functools.cache
def shaped(kind: Any) -> st.SearchStrategy[Any]:
    """Documents that follow a spec type's shape with mostly sensible values, so
    that one injected fault (see `mutated`) is met deep inside the checks."""
    origin = get_origin(kind)
    if origin is Literal:
        return st.sampled_from([str(c) for c in get_args(kind)])
    if origin is Union or (origin is not None and type(None) in get_args(kind)):
        (member,) = [a for a in get_args(kind) if a is not type(None)]
        return st.none() | shaped(member)
    if origin is list:
        return st.just([]) | st.lists(shaped(get_args(kind)[0]), min_size=1, max_size=3)
    if origin is dict:
        return st.dictionaries(NAMES, shaped(get_args(kind)[1]), max_size=4)
    if kind is PortRange:
        return port_ranges()
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        fields = {f.name: _field(kind, f, hints[f.name]) for f in dataclasses.fields(kind)}
        # Lists and mappings always; fields with a default now and then.
        optional = {f.name for f in dataclasses.fields(kind)
                    if f.default is not dataclasses.MISSING}
        return st.fixed_dictionaries(
            {name: value for name, value in fields.items() if name not in optional},
            optional={name: value for name, value in fields.items() if name in optional})
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: NAMES | st.text(max_size=10),
        int: mostly(st.integers(1, 50) | st.integers(64, 100_000),
                    st.sampled_from([-5, 0, 10**9 + 1, 86_401])),
        float: mostly(st.floats(1.0, 5.0) | st.integers(1, 5), st.floats(0, 20_000)),
        bool: st.booleans(),
        IPv4Address: LAB_ADDRESSES.map(str),
        IPv4Interface: interfaces(),
        IPv4Network: networks(),
        DnsName: NAMES.map(lambda name: f"{name}.lab") | st.text(max_size=10),
    }
    return simple[kind]


def _field(kind: type, field: dataclasses.Field[Any], hint: Any) -> st.SearchStrategy[Any]:
    if (kind, field.name) == (Policy, "expect"):
        profiles = st.sampled_from(PROFILES) | NAMES
        strategies = st.sampled_from(STRATEGIES) | NAMES
        inner = get_args(get_args(hint)[1])[1]
        return st.dictionaries(profiles, st.dictionaries(strategies, shaped(inner), max_size=3),
                               max_size=3)
    check = field.metadata.get("check")
    if check is check_name:
        return NAMES if hint is str else st.none() | NAMES
    if check is not None:  # Route.to
        return st.just("default") | networks()
    return shaped(hint)


def node_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from node_paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from node_paths(inner, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any], most: int = 2) -> Any:
    """A document with up to `most` faults: a key deleted, a leaf replaced by an
    odd scalar, a node replaced by any value, a key or an item inserted."""
    document = copy.deepcopy(draw(documents))
    for _ in range(draw(st.integers(min_value=0, max_value=most))):
        paths = list(node_paths(document))
        leaves = [p for p in paths if p and not isinstance(_at(document, p), (dict, list))]
        numbers = [p for p in leaves if isinstance(_at(document, p), (int, float))]
        aim = draw(st.sampled_from(["number", "leaf", "node"]))  # numbers: few, and subtle
        path = draw(st.sampled_from(numbers if numbers and aim == "number"
                                    else leaves if leaves and aim != "node" else paths))
        operation = draw(st.sampled_from(["delete", "scalar", "replace", "insert"]))
        target = _at(document, path)
        parent = _at(document, path[:-1])
        if operation == "insert" and isinstance(target, dict):
            target[draw(KEYS)] = draw(VALUES)
        elif operation == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(VALUES))
        elif operation == "delete" and path:
            del parent[path[-1]]
        elif path:
            parent[path[-1]] = draw(fault_for(target) if operation == "scalar" else VALUES)
        else:
            document = draw(VALUES)
    return document


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def fault_for(value: Any) -> st.SearchStrategy[Any]:
    """A scalar to put in place of `value`: odd YAML, or a near miss of it."""
    if isinstance(value, str):
        near = [value + "\n", value + "; rm -rf /", "../" + value, value.upper(), f" {value}",
                value * 40]
        return st.one_of(st.sampled_from(near), st.sampled_from(ODD_STRINGS), RAW)
    return RAW | SCALARS


@fuzz(300)
@given(document=mutated(shaped(Policy)), flow=FLOW, bound=st.booleans())
def test_schema_shaped_policies(spec_file: Path, document: Any, flow: bool | None,
                                bound: bool) -> None:
    load_policy_checked(spec_file, dump(document, flow), bound)


@fuzz(80)
@given(document=mutated(shaped(Topology)), flow=FLOW)
def test_schema_shaped_topologies(spec_file: Path, document: Any, flow: bool | None) -> None:
    load_topology_checked(spec_file, dump(document, flow))


# ---------------------------------------------------------------- mutations of shipped specs

@fuzz(120)
@given(document=mutated(st.sampled_from(TOPOLOGY_DOCUMENTS), most=3), flow=FLOW)
def test_mutated_topology_documents(spec_file: Path, document: Any, flow: bool | None) -> None:
    load_topology_checked(spec_file, dump(document, flow))


@fuzz(200)
@given(document=mutated(st.sampled_from(POLICY_DOCUMENTS), most=3), flow=FLOW,
       bound=st.booleans())
def test_mutated_policy_documents(spec_file: Path, document: Any, flow: bool | None,
                                  bound: bool) -> None:
    load_policy_checked(spec_file, dump(document, flow), bound)


# Raw text to put after a line's first colon.
RAW_VALUES = [
    "0x1F", "017", "0o17", "0b101", "1_000", "1:30", "1:30.5", ".inf", "-.inf", ".NaN", "1e308",
    "1.0e+308", "1.0e+999", "9" * 5000, "-1", "0", "65536", "yes", "No", "on", "~", "", "null",
    "!!python/object:os.system {}", "!!int abc", "&a x", "*a", "[", "{", "]", "}", "{a: 1}",
    "[1, 2]", "'x; rm -rf /'", "$(id)", "`id`", "../../etc", "2024-01-01", "\"\\x00\"", "|",
    "'a\\nb'", "\"a\\nb\"", "- x", "? x", "@x", "%x", "\t1", "'", "\"", "\x00", "\x85", "\udcff",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]]]]]]]",
]


SCALAR_VALUE = re.compile(r"[\w-]: ([^,{}\[\]\n#>|]+)")
NUMBER = re.compile(r"[-+]?[0-9.]+|true|false")


@st.composite
def mutated_text(draw: st.DrawFn, texts: list[str]) -> bytes:
    """A shipped spec's text with 1 to 3 edits: a line duplicated, deleted, swapped,
    indented or spliced with a YAML token, a value replaced, a key inserted, the
    file truncated."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        lines = text.splitlines(keepends=True) or [""]
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        operation = draw(st.sampled_from(["duplicate", "delete", "truncate", "value", "scalar",
                                          "scalar", "insert", "swap", "indent", "splice"]))
        if operation == "duplicate":
            lines.insert(index, line)
        elif operation == "delete":
            del lines[index]
        elif operation == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
            continue
        elif operation == "scalar" and SCALAR_VALUE.search(text):
            spans = [m.span(1) for m in SCALAR_VALUE.finditer(text)]
            numbers = [(a, b) for a, b in spans if NUMBER.fullmatch(text[a:b])]
            prefer_number = draw(st.booleans())
            start, end = draw(st.sampled_from(numbers if numbers and prefer_number else spans))
            value = draw(st.sampled_from(ODD_PLAIN) | st.sampled_from(ODD_STRINGS))
            text = text[:start] + value + text[end:]
            continue
        elif operation == "value" and ":" in line:
            key, _, _ = line.partition(":")
            value = draw(st.sampled_from(RAW_VALUES) | st.text(max_size=10))
            lines[index] = f"{key}: {value}\n"
        elif operation == "insert":
            indent = " " * draw(st.sampled_from([0, 2, 4, 6]))
            key = draw(st.sampled_from(SPEC_WORDS + ["include", "<<"]) | st.text(max_size=5))
            lines.insert(index, f"{indent}{key}: {draw(st.sampled_from(RAW_VALUES))}\n")
        elif operation == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif operation == "indent":
            lines[index] = draw(st.sampled_from([" ", "\t", "  "])) + line
        else:
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.sampled_from(YAML_TOKENS)) + line[at:]
        text = "".join(lines)
    return text.encode("utf-8", "surrogatepass")


@fuzz(250)
@given(data=mutated_text(TOPOLOGY_TEXTS))
def test_mutated_topology_text(spec_file: Path, data: bytes) -> None:
    load_topology_checked(spec_file, data)


@fuzz(400)
@given(data=mutated_text(POLICY_TEXTS), bound=st.booleans())
def test_mutated_policy_text(spec_file: Path, data: bytes, bound: bool) -> None:
    load_policy_checked(spec_file, data, bound)
