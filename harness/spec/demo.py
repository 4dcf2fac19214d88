"""Demo scripts (scenarios/demos/*.yaml): one call for a class, with the
censor changing under it in timed phases.

A script names a topology and the call (a profile and a strategy). The call
is placed before the first phase and lasts until a phase that hangs it up (or
to the end). Each phase runs for ``duration_s``; it may load another policy
when it starts (``policy``; without it the previous phase's stays), place a
new call attempt of the same profile with its own strategy (``attempt``: a
second dial, or the same call through a circumvention tool), and declare
what it must show (``expect``), for the established call and for the
attempt. Each phase carries a title and a one-paragraph explanation for the
class, and the ids of the sources it rests on (docs/sources.md).

MOS in ``expect`` is the E-model's (ITU-T G.107), as everywhere in callwall
(harness.measure.emodel); the demo also scores PESQ-WB per phase and shows
it beside, but declares nothing on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness import paths
from harness.spec.names import PROFILES, unplaceable
from harness.spec.schema import (
    Located,
    SpecError,
    check_name,
    has_top_level_key,
    load_yaml_node,
    locate,
    parse_dataclass,
    shorten,
)

DEMOS = paths.HOME / "scenarios" / "demos"
DEFAULT_DEMO = "whatsapp-2025"
SOURCE_ID = re.compile(r"S[0-9]{1,4}")
# A phase shorter than this leaves too few per-second figures to judge it.
MIN_PHASE_S = 4.0
MAX_PHASE_S = 600.0
MAX_PHASES = 12
MOS_RANGE = (1.0, 5.0)


def _check_duration(value: float) -> None:
    if not MIN_PHASE_S <= value <= MAX_PHASE_S:
        raise ValueError(f"{value:g} s is out of range ({MIN_PHASE_S:g} to {MAX_PHASE_S:g} s)")


def _check_non_negative(value: float) -> None:
    if value < 0:
        raise ValueError(f"{value:g} must be >= 0")


def _check_positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"{value:g} must be > 0")


def _check_mos(value: float) -> None:
    low, high = MOS_RANGE
    if not low <= value <= high:
        raise ValueError(f"MOS {value:g} is outside {low:g}..{high:g}")


def _check_sources(value: list[str]) -> None:
    if not value:
        raise ValueError("cite at least one source (an id of docs/sources.md, e.g. S2)")
    for item in value:
        if not SOURCE_ID.fullmatch(item):
            raise ValueError(f"{shorten(repr(item))} is not a source id (S followed by digits, "
                             "as in docs/sources.md)")


def _check_text(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


@dataclass(frozen=True)
class DemoCall:
    """The call the demo places before its first phase."""

    profile: str
    strategy: str = "direct"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; profiles are: "
                             f"{', '.join(PROFILES)}")
        why = unplaceable(self.profile, self.strategy)
        if why is not None:
            raise ValueError(why)


@dataclass(frozen=True)
class Attempt:
    """A new call of the same profile, placed ``at_s`` into its phase."""

    strategy: str
    at_s: float = field(default=0.0, metadata={"check": _check_non_negative})
    # How long the attempt may take to decode its first frame (tunnel bring-up
    # included) before it counts as failed. Not scaled by --speed.
    setup_timeout_s: float = field(default=12.0, metadata={"check": _check_positive})


@dataclass(frozen=True)
class CallExpect:
    """What one call must show during a phase. ``media: true``: audio both
    ways through the phase, no failure; ``media: false``: not one packet of
    audio either way (for an attempt: it never decoded a frame)."""

    media: bool | None = None
    min_mos: float | None = field(default=None, metadata={"check": _check_mos})
    max_mos: float | None = field(default=None, metadata={"check": _check_mos})

    def __post_init__(self) -> None:
        if self.media is False and (self.min_mos is not None or self.max_mos is not None):
            raise ValueError("media: false leaves no MOS to bound")
        if (self.min_mos is not None and self.max_mos is not None
                and self.min_mos >= self.max_mos):
            raise ValueError("min_mos must be below max_mos")

    def describe(self) -> str:
        parts = []
        if self.media is not None:
            parts.append("media" if self.media else "no media")
        if self.min_mos is not None:
            parts.append(f"MOS >= {self.min_mos:g}")
        if self.max_mos is not None:
            parts.append(f"MOS < {self.max_mos:g}")
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class PhaseExpect:
    call: CallExpect | None = None
    attempt: CallExpect | None = None


@dataclass(frozen=True)
class Phase:
    id: str = field(metadata={"check": check_name})
    title: str = field(metadata={"check": _check_text})
    duration_s: float = field(metadata={"check": _check_duration})
    explain: str = field(metadata={"check": _check_text})
    sources: list[str] = field(metadata={"check": _check_sources})
    policy: str | None = None
    attempt: Attempt | None = None
    hang_up: bool = False
    expect: PhaseExpect = field(default_factory=PhaseExpect)


@dataclass(frozen=True)
class DemoScript:
    name: str = field(metadata={"check": check_name})
    title: str = field(metadata={"check": _check_text})
    description: str
    call: DemoCall
    phases: list[Phase]
    topology: str = field(default=paths.DEFAULT_TOPOLOGY, metadata={"check": check_name})

    @property
    def policies(self) -> list[str]:
        """Every policy the script loads, in order, once each."""
        return list(dict.fromkeys(p.policy for p in self.phases if p.policy))

    def call_phases(self) -> list[Phase]:
        """The phases the established call lasts through (up to a hang-up)."""
        kept = []
        for phase in self.phases:
            if phase.hang_up:
                break
            kept.append(phase)
        return kept


def demo_path(name: str) -> Path:
    """A demo script by name (scenarios/demos/<name>.yaml) or as a file."""
    return paths.resolve_spec(name, DEMOS)


def all_demos() -> list[Path]:
    return sorted(DEMOS.glob("*.yaml"))


def is_demo_file(path: Path) -> bool:
    """Whether `callwall validate` should read `path` as a demo script: it is
    in a demos/ folder, or it has a top-level `phases:` key."""
    return path.parent.name == "demos" or has_top_level_key(path, "phases")


def load_demo(path: Path) -> DemoScript:
    """Read and check a demo script; SpecError names the file, line and field."""
    loc = load_yaml_node(path)
    script = parse_dataclass(loc, DemoScript)
    _check_script(script, loc)
    return script


def _check_script(script: DemoScript, loc: Located) -> None:
    if not script.phases:
        raise locate(loc, "phases").error("a demo needs at least one phase")
    if len(script.phases) > MAX_PHASES:
        raise locate(loc, "phases").error(f"at most {MAX_PHASES} phases")
    _check_spec_exists(script.topology, paths.TOPOLOGIES, locate(loc, "topology"))
    seen: set[str] = set()
    hung_up = False
    for index, phase in enumerate(script.phases):
        where = locate(loc, "phases", index)
        if phase.id in seen:
            raise locate(where, "id").error(f"phase id {phase.id!r} is used twice")
        seen.add(phase.id)
        if index == 0 and phase.policy is None:
            raise where.error("the first phase must name a policy (the censor's state when "
                              "the call starts)")
        if phase.policy is not None:
            _check_spec_exists(phase.policy, paths.POLICIES, locate(where, "policy"))
        if phase.hang_up:
            if index == 0:
                raise locate(where, "hang_up").error("the call cannot end before it started")
            hung_up = True
        _check_phase(script, phase, where, hung_up)


def _check_phase(script: DemoScript, phase: Phase, where: Located, hung_up: bool) -> None:
    if phase.attempt is not None:
        why = unplaceable(script.call.profile, phase.attempt.strategy)
        if why is not None:
            raise locate(where, "attempt", "strategy").error(why)
        if phase.attempt.at_s >= phase.duration_s:
            raise locate(where, "attempt", "at_s").error(
                f"{phase.attempt.at_s:g} s is not within the phase ({phase.duration_s:g} s)")
    if phase.expect.call is not None and hung_up:
        raise locate(where, "expect", "call").error(
            "the established call was hung up by this phase or an earlier one")
    if phase.expect.attempt is not None and phase.attempt is None:
        raise locate(where, "expect", "attempt").error("the phase places no attempt")


def _check_spec_exists(name: str, folder: Path, where: Located) -> None:
    try:
        check_name(name)
        paths.resolve_spec(name, folder)
    except (ValueError, paths.SpecNotFound) as exc:
        raise SpecError(where.file, where.line, where.path, str(exc)) from None
