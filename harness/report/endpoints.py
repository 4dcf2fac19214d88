"""Where the real endpoints part from the aiortc client: for each call of a
run placed with a real endpoint (Chromium, baresip, an endpoint descriptor's
client), whether its policy expects another outcome than for the webrtc
(aiortc) client with the same strategy, and the expectation's `why`, which
names the ICE or codec behaviour that makes the difference.

The webrtc expectation comes from the run itself when it placed that webrtc
cell, else from the shipped policy of that name; a policy that is neither
(a file passed by path) is left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from harness import paths
from harness.measure.record import CallRecord
from harness.spec.descriptor import descriptors
from harness.spec.names import Profile
from harness.spec.policy import load_policy
from harness.spec.schema import SpecError

BASE_PROFILE = Profile.WEBRTC.value
BUILT_IN_ENDPOINTS = (Profile.BROWSER.value, Profile.BROWSER_AIORTC.value, Profile.SIP.value)

# (policy, strategy) -> the webrtc expectation as a record carries it, or None
WebRtcLookup = Callable[[str, str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class EndpointDifference:
    """One real-endpoint cell whose expected outcome differs from webrtc's."""

    policy: str
    profile: str
    strategy: str
    webrtc_outcome: str
    expected_outcome: str
    observed_outcome: str
    why: str


def real_endpoint_profiles() -> frozenset[str]:
    """Chromium, baresip, and every endpoint descriptor's client."""
    return frozenset((*BUILT_IN_ENDPOINTS, *descriptors().clients))


@cache
def shipped_webrtc(policy: str, strategy: str) -> Mapping[str, Any] | None:
    """The shipped policy's webrtc expectation for `strategy` (None when the
    policy is not shipped, or does not load, or declares none)."""
    try:
        expectation = load_policy(paths.policy_path(policy)).expectation(BASE_PROFILE, strategy)
    except (paths.SpecNotFound, SpecError, OSError):
        return None
    if expectation is None:
        return None
    return {"outcome": expectation.outcome, "why": expectation.why}


def endpoint_differences(records: Iterable[CallRecord],
                         webrtc: WebRtcLookup = shipped_webrtc) -> list[EndpointDifference]:
    """The run's real-endpoint calls whose policy expects another outcome than
    for webrtc with the same strategy, in policy, profile, strategy order."""
    records = list(records)
    in_run = {(r.policy, r.strategy): r.expected for r in records
              if r.profile == BASE_PROFILE and r.expected}
    real = real_endpoint_profiles()
    found: dict[tuple[str, str, str], EndpointDifference] = {}
    for record in records:
        if record.profile not in real or not record.expected:
            continue
        base = in_run.get((record.policy, record.strategy)) or webrtc(record.policy,
                                                                       record.strategy)
        if not base:
            continue
        mine, theirs = str(record.expected.get("outcome", "")), str(base.get("outcome", ""))
        if not mine or not theirs or mine == theirs:
            continue
        key = (record.policy, record.profile, record.strategy)
        found[key] = EndpointDifference(
            policy=record.policy, profile=record.profile, strategy=record.strategy,
            webrtc_outcome=theirs, expected_outcome=mine, observed_outcome=record.outcome,
            why=str(record.expected.get("why") or "no why recorded"))
    return [found[key] for key in sorted(found)]
