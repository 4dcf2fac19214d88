"""Named link presets (`ru-mobile-lte`, ...): one-way impairments with the
sources or stated assumptions behind their numbers, read from
topologies/presets/link-presets.yaml through the spec schema, so a bad
preset is reported as `file:line: field: message` like any spec.

(The file sits in a subfolder so that `topologies/*.yaml` stays the set of
topologies.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness import paths
from harness.spec.impairment import Impairment
from harness.spec.schema import check_name, load_yaml_node, locate, parse_dataclass

PRESETS_FILE = paths.LINK_PRESETS
# The link profile that impairs nothing: the topology's own links as they are.
# Every other link profile is a preset's name (see `link_profile_names`).
IDEAL_LINK = "ideal"


def _check_texts(values: list[str]) -> None:
    if any(not v.strip() for v in values):
        raise ValueError("entries must not be empty")


@dataclass(frozen=True)
class LinkPreset:
    description: str
    impairment: Impairment
    sources: list[str] = field(default_factory=list, metadata={"check": _check_texts})
    assumptions: list[str] = field(default_factory=list, metadata={"check": _check_texts})

    def __post_init__(self) -> None:
        if not self.sources and not self.assumptions:
            raise ValueError("a preset needs its sources or its stated assumptions "
                             "(or both)")


@dataclass(frozen=True)
class PresetFile:
    presets: dict[str, LinkPreset]


def load_preset_file(path: Path = PRESETS_FILE) -> dict[str, LinkPreset]:
    loc = load_yaml_node(path)
    parsed = parse_dataclass(loc, PresetFile)
    for name in parsed.presets:
        try:
            check_name(name)
            if name == IDEAL_LINK:
                raise ValueError(f"{IDEAL_LINK!r} is reserved: it names the link profile "
                                 "without impairment")
        except ValueError as exc:
            raise locate(loc, "presets", name).error(str(exc)) from None
    return parsed.presets


@lru_cache(maxsize=4)
def _cached(path: Path) -> dict[str, LinkPreset]:
    return load_preset_file(path)


def presets(path: Path = PRESETS_FILE) -> dict[str, LinkPreset]:
    """The shipped presets by name (read once per process)."""
    return _cached(path)


def impairments(path: Path = PRESETS_FILE) -> dict[str, Impairment]:
    return {name: p.impairment for name, p in presets(path).items()}


def link_profile_names(path: Path = PRESETS_FILE) -> list[str]:
    """What a matrix may list under `link_profiles`: `ideal`, then every preset."""
    return [IDEAL_LINK, *presets(path)]


def link_profile_impairment(name: str, path: Path = PRESETS_FILE) -> Impairment | None:
    """The one-way impairment a link profile puts on each direction of the
    subscriber's access link; None for `ideal`. ValueError for an unknown name."""
    if name == IDEAL_LINK:
        return None
    known = presets(path)
    if name not in known:
        raise ValueError(f"unknown link profile {name!r}; link profiles are: "
                         f"{', '.join(link_profile_names(path))}")
    return known[name].impairment
