"""Scenario matrices: which calls `make scenarios` places, as data.

A matrix names a topology and groups of calls; each group crosses a list of
policies (or "*": every shipped policy) with the profiles and strategies it
lists. Every call of the matrix must have an expectation in its policy's
`expect:` block, so the matrix cannot silently run a call nobody judged.

A group may also list `link_profiles`: `ideal` (the topology's links as they
are, the default) or names of link presets (topologies/presets/
link-presets.yaml). Every call of the group then runs once per link profile,
with the preset on both directions of the subscriber's access link
(harness.link.profile). A cell is (policy, profile, strategy, link profile)
on the matrix's topology; its slug keeps the ideal cells' ids and adds
`--<link profile>` for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.spec.descriptor import profiles, unplaceable_any
from harness.spec.names import ANY
from harness.spec.policy import Policy
from harness.spec.presets import IDEAL_LINK, link_profile_names
from harness.spec.schema import (
    Located,
    check_name,
    has_top_level_key,
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
    # `ideal` and/or link preset names: each call runs once per entry.
    link_profiles: list[str] = field(default_factory=lambda: [IDEAL_LINK])


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
    link_profile: str = IDEAL_LINK

    @property
    def slug(self) -> str:
        return cell_slug(self.policy, self.profile, self.strategy, self.link_profile)


def cell_slug(policy: str, profile: str, strategy: str, link_profile: str = IDEAL_LINK) -> str:
    """A cell's id: policy--profile--strategy, and --link-profile unless ideal
    (so an ideal cell keeps the id it had before link profiles existed)."""
    base = f"{policy}--{profile}--{strategy}"
    return base if link_profile == IDEAL_LINK else f"{base}--{link_profile}"


PolicyLoader = Callable[[str], Policy]


def is_matrix_file(path: Path) -> bool:
    """Whether `callwall validate` should read `path` as a scenario matrix: it
    has a top-level `groups:` key (policies, topologies and demos have none)."""
    return has_top_level_key(path, "groups")


def load_matrix(path: Path) -> tuple[Matrix, Located]:
    loc = load_yaml_node(path)
    matrix = parse_dataclass(loc, Matrix)
    _check_calls(matrix, loc)
    return matrix, loc


def matrix_cells(matrix: Matrix, loc: Located, shipped: list[str],
                 load: PolicyLoader) -> list[Cell]:
    """Every call of the matrix, once, in the order the groups list them (a
    group's calls once per link profile, in the order it lists those); an
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
                    for link_profile in group.link_profiles:
                        cells[Cell(name, profile, strategy, link_profile)] = None
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
    known_links = link_profile_names()
    for index, group in enumerate(matrix.groups):
        if not group.link_profiles:
            raise locate(loc, "groups", index, "link_profiles").error(
                f"empty: list at least one link profile ({IDEAL_LINK!r} for none)")
        for position, link_profile in enumerate(group.link_profiles):
            if link_profile not in known_links:
                raise locate(loc, "groups", index, "link_profiles", position).error(
                    f"unknown link profile {shorten(repr(link_profile))}; link profiles are: "
                    f"{', '.join(known_links)}")
            if group.link_profiles.index(link_profile) != position:
                raise locate(loc, "groups", index, "link_profiles", position).error(
                    f"link profile {link_profile!r} is listed twice")
        for profile, strategies in group.calls.items():
            where = locate(loc, "groups", index, "calls", profile)
            if profile not in profiles():  # endpoint descriptors included
                raise where.error(f"unknown profile {profile!r}; profiles are: "
                                  f"{', '.join(profiles())}")
            for position, strategy in enumerate(strategies):
                why = unplaceable_any(profile, strategy)
                if why is not None:
                    raise locate(where, position).error(why)
