"""Scenario matrices: which calls `make scenarios` places, as data.

A matrix names a topology and groups of calls; each group crosses a list of
policies (or "*": every shipped policy) with the profiles and strategies it
lists. Every call of the matrix must have an expectation in its policy's
`expect:` block, so the matrix cannot silently run a call nobody judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.spec.descriptor import profiles, unplaceable_any
from harness.spec.names import ANY
from harness.spec.policy import Policy
from harness.spec.schema import (
    Located,
    check_name,
    load_yaml_node,
    locate,
    parse_dataclass,
    shorten,
)


@dataclass(frozen=True)
class CallGroup:
    policies: list[str]  # names of shipped policies, or ["*"] for all
    calls: dict[str, list[str]]
    description: str = ""


@dataclass(frozen=True)
class Matrix:
    name: str = field(metadata={"check": check_name})
    description: str
    topology: str = field(metadata={"check": check_name})
    groups: list[CallGroup]


@dataclass(frozen=True, order=True)
class Cell:
    """One call of the matrix."""

    policy: str
    profile: str
    strategy: str

    @property
    def slug(self) -> str:
        return f"{self.policy}--{self.profile}--{self.strategy}"


PolicyLoader = Callable[[str], Policy]


def load_matrix(path: Path) -> tuple[Matrix, Located]:
    loc = load_yaml_node(path)
    matrix = parse_dataclass(loc, Matrix)
    _check_calls(matrix, loc)
    return matrix, loc


def matrix_cells(matrix: Matrix, loc: Located, shipped: list[str],
                 load: PolicyLoader) -> list[Cell]:
    """Every call of the matrix, once, in the order the groups list them; an
    unknown policy or a call without an expectation is an error at its group."""
    cells: dict[Cell, None] = {}
    for index, group in enumerate(matrix.groups):
        where = locate(loc, "groups", index)
        for name in _group_policies(group, shipped, where):
            policy = load(name)
            for profile, strategies in group.calls.items():
                for strategy in strategies:
                    if policy.expectation(profile, strategy) is None:
                        raise locate(where, "calls", profile).error(
                            f"policy {name!r} declares no expectation for {profile}/{strategy}: "
                            "add it to the policy's expect: block")
                    cells[Cell(name, profile, strategy)] = None
    return list(cells)


def _group_policies(group: CallGroup, shipped: list[str], where: Located) -> list[str]:
    if ANY in group.policies:
        return shipped
    for index, name in enumerate(group.policies):
        if name not in shipped:
            raise locate(where, "policies", index).error(
                f"no shipped policy {shorten(repr(name))} (known: {', '.join(shipped)})")
    return group.policies


def _check_calls(matrix: Matrix, loc: Located) -> None:
    for index, group in enumerate(matrix.groups):
        for profile, strategies in group.calls.items():
            where = locate(loc, "groups", index, "calls", profile)
            if profile not in profiles():  # endpoint descriptors included
                raise where.error(f"unknown profile {profile!r}; profiles are: "
                                  f"{', '.join(profiles())}")
            for position, strategy in enumerate(strategies):
                why = unplaceable_any(profile, strategy)
                if why is not None:
                    raise locate(where, position).error(why)
