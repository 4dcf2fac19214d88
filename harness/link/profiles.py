"""Named link profiles (`ru-mobile-lte`, ...): one-way impairments with the
sources or stated assumptions behind their numbers, read from
topologies/profiles/link-profiles.yaml through the spec schema, so a bad
profile is reported as `file:line: field: message` like any spec.

(The file sits in a subfolder so that `topologies/*.yaml` stays the set of
topologies.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness import paths
from harness.link.model import Impairment
from harness.spec.schema import check_name, load_yaml_node, locate, parse_dataclass

PROFILES_FILE = paths.TOPOLOGIES / "profiles" / "link-profiles.yaml"


def _check_texts(values: list[str]) -> None:
    if any(not v.strip() for v in values):
        raise ValueError("entries must not be empty")


@dataclass(frozen=True)
class LinkProfile:
    description: str
    impairment: Impairment
    sources: list[str] = field(default_factory=list, metadata={"check": _check_texts})
    assumptions: list[str] = field(default_factory=list, metadata={"check": _check_texts})

    def __post_init__(self) -> None:
        if not self.sources and not self.assumptions:
            raise ValueError("a profile needs its sources or its stated assumptions "
                             "(or both)")


@dataclass(frozen=True)
class ProfileFile:
    profiles: dict[str, LinkProfile]


def load_profile_file(path: Path = PROFILES_FILE) -> dict[str, LinkProfile]:
    loc = load_yaml_node(path)
    parsed = parse_dataclass(loc, ProfileFile)
    for name in parsed.profiles:
        try:
            check_name(name)
        except ValueError as exc:
            raise locate(loc, "profiles", name).error(str(exc)) from None
    return parsed.profiles


@lru_cache(maxsize=4)
def _cached(path: Path) -> dict[str, LinkProfile]:
    return load_profile_file(path)


def profiles(path: Path = PROFILES_FILE) -> dict[str, LinkProfile]:
    """The shipped profiles by name (read once per process)."""
    return _cached(path)


def impairments(path: Path = PROFILES_FILE) -> dict[str, Impairment]:
    return {name: p.impairment for name, p in profiles(path).items()}
