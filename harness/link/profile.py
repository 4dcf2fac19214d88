"""Link profiles: a matrix cell's access link, impaired for one call.

A link profile is `ideal` (the topology's links as they are) or the name of a
link preset (topologies/presets/link-presets.yaml). For a call on a preset,
both directions of the subscriber's access link (the one link of the host
with role `caller`) carry the preset's one-way impairment for the length of
the call, through the same `set_impairment` that `callwall link set` uses;
afterwards each direction gets back what the topology gave it (nothing, on
an unimpaired topology), so the lab serves the next cell unchanged.

Each direction's loss and jitter draw from its own seed, derived from the
run, the call and the direction (`direction_seed`): two directions, two calls
and two runs do not replay one loss pattern, and the record keeps the seeds,
so a call's link can be replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.link.apply import (
    LinkSetError,
    find_link,
    set_impairment,
    target_for,
    topology_impairments,
)
from harness.netns.network import LabNetwork
from harness.spec.impairment import MAX_SEED, Impairment
from harness.spec.presets import IDEAL_LINK, link_profile_impairment
from harness.spec.topology import Topology


@dataclass(frozen=True)
class AppliedLinkProfile:
    """What a link profile put on the lab for one call."""

    name: str
    impairment: Impairment | None  # the preset's one-way impairment; None: ideal
    # (link index, direction) of each impaired direction, for the lateness figures
    directions: tuple[tuple[int, int], ...] = ()
    seeds: dict[str, int] = field(default_factory=dict)  # link label -> seed

    @property
    def is_ideal(self) -> bool:
        return self.impairment is None

    def to_dict(self) -> dict[str, Any]:
        """For the record: {} on ideal, else the preset, its parameters and seeds."""
        if self.impairment is None:
            return {}
        return {"preset": self.name, "impairment": self.impairment.describe(),
                "directions": dict(self.seeds)}


def access_link(topology: Topology) -> tuple[str, str]:
    """(the caller's host, its neighbour): the two ends of the subscriber's
    access link. A caller on several links has no single access link."""
    caller = topology.host_with_role("caller")
    neighbours = [end.host for link in topology.links if caller in (link.a.host, link.b.host)
                  for end in link.ends if end.host != caller]
    if len(neighbours) != 1:
        raise LinkSetError(f"the caller {caller} is on {len(neighbours)} links; a link profile "
                           "impairs its one access link")
    return caller, neighbours[0]


def direction_seed(run_id: str, call_id: str, label: str) -> int:
    """A seed for one direction of one call, stable for the same run, call and link."""
    digest = hashlib.sha256(f"{run_id}/{call_id}/{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)


@contextmanager
def link_profile_applied(lab: LabNetwork, name: str, call_id: str = ""
                         ) -> Iterator[AppliedLinkProfile]:
    """Put link profile `name` on both directions of the access link for the
    `with` block, then give each direction back the topology's own impairment.
    `ideal` changes nothing. An unknown name is a LinkSetError."""
    try:
        impairment = link_profile_impairment(name)
    except ValueError as exc:
        raise LinkSetError(str(exc)) from None
    if impairment is None:
        yield AppliedLinkProfile(IDEAL_LINK, None)
        return
    caller, neighbour = access_link(lab.topology)
    own = {(index, direction): spec
           for index, direction, spec in topology_impairments(lab.topology)}
    done: list[tuple[str, str, tuple[int, int]]] = []
    seeds: dict[str, int] = {}
    try:
        for sender, receiver in ((caller, neighbour), (neighbour, caller)):
            where = find_link(lab.topology, sender, receiver)
            label = target_for(lab, *where).label
            seeds[label] = direction_seed(lab.run_id, call_id, label)
            done.append((sender, receiver, where))
            set_impairment(lab, sender, receiver, impairment.with_overrides(seed=seeds[label]))
        yield AppliedLinkProfile(name, impairment, tuple(w for _, _, w in done), seeds)
    finally:
        for sender, receiver, where in reversed(done):
            set_impairment(lab, sender, receiver, own.get(where))
