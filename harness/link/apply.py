"""Putting impairments on a lab's links: the topology's at bring-up, and any
direction's later (`callwall link set`, on a running lab).

A direction a->b is impaired on the egress of a's interface on that link.
The backend is chosen once per run (harness/link/selection.py) and recorded
in the run's state, so a process attaching later uses the same one.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.link.backend import BackendName, LinkBackend, LinkLateness, LinkTarget
from harness.link.netem import NetemBackend
from harness.link.selection import choose_backend, remember
from harness.netns.host import LabHost
from harness.netns.network import LabNetwork
from harness.spec.impairment import Impairment
from harness.spec.presets import impairments as preset_impairments
from harness.spec.topology import Topology


class LinkSetError(ValueError):
    pass


def interface_on_link(topology: Topology, host: str, link_index: int) -> str:
    """The name (ethN) of `host`'s interface on link `link_index`."""
    count = 0
    for index, link in enumerate(topology.links):
        for end in link.ends:
            if end.host == host:
                if index == link_index:
                    return f"eth{count}"
                count += 1
    raise LinkSetError(f"{host} is not on link {link_index}")


def find_link(topology: Topology, sender: str, receiver: str) -> tuple[int, int]:
    """(link index, direction) of the link carrying sender -> receiver."""
    for index, link in enumerate(topology.links):
        if (link.a.host, link.b.host) == (sender, receiver):
            return index, 0
        if (link.b.host, link.a.host) == (sender, receiver):
            return index, 1
    raise LinkSetError(f"no link joins {sender} and {receiver}; links are: " + ", ".join(
        f"{link.a.host}-{link.b.host}" for link in topology.links))


def target_for(lab: LabNetwork, link_index: int, direction: int) -> LinkTarget:
    link = lab.topology.links[link_index]
    sender = link.ends[direction].host
    return LinkTarget(lab.host(sender), interface_on_link(lab.topology, sender, link_index),
                      link_index, direction)


def backend_for(lab: LabNetwork, probe_host: LabHost | None = None) -> LinkBackend:
    """The run's backend: recorded, or probed now (and recorded)."""
    from harness.link.userspace import UserspaceBackend  # needs the daemon's constants

    recorded = lab.registry.state.link_backend
    name: BackendName
    if recorded is not None:
        name = recorded
        remember(lab.run_id, name)
    else:
        host = probe_host or next(iter(lab.hosts.values()))
        name = choose_backend(lab.run_id, host, lab.topology.link_backend)
        lab.registry.state.link_backend = name
        lab.registry.save()
    return NetemBackend() if name == "netem" else UserspaceBackend(lab.registry)


def topology_impairments(topology: Topology) -> list[tuple[int, int, Impairment]]:
    """(link index, direction, impairment) for every impaired direction.
    A direction whose spec sets no seed gets its own (topology_seed): with
    one seed everywhere, both directions of a link, and every link, would
    draw the same random sequence and lose the same packet indexes."""
    presets = preset_impairments()
    result = []
    for index, link in enumerate(topology.links):
        if link.impair is None:
            continue
        for direction in (0, 1):
            spec = link.impair.direction(direction)
            if spec is not None:
                impairment = spec.resolve(presets)
                if spec.seed is None:
                    impairment = impairment.with_overrides(seed=topology_seed(index, direction))
                result.append((index, direction, impairment))
    return result


def topology_seed(link_index: int, direction: int) -> int:
    """A reproducible seed of its own for each direction of each link."""
    return 1 + 2 * link_index + direction


def apply_topology_impairments(lab: LabNetwork) -> dict[str, str]:
    """Impair every direction the topology asks for; returns label -> description.
    Does nothing (and probes nothing) when the topology impairs no link."""
    wanted = topology_impairments(lab.topology)
    if not wanted:
        return {}
    backend = backend_for(lab)
    applied = {}
    for index, direction, impairment in wanted:
        target = target_for(lab, index, direction)
        backend.apply(target, impairment)
        applied[target.label] = impairment.describe()
    _record(lab, applied)
    return applied


def set_impairment(lab: LabNetwork, sender: str, receiver: str,
                   impairment: Impairment | None) -> tuple[str, str]:
    """Change (or with None, clear) the impairment of sender -> receiver on a
    running lab. Returns (label, description)."""
    index, direction = find_link(lab.topology, sender, receiver)
    target = target_for(lab, index, direction)
    backend = backend_for(lab, target.host)
    if impairment is None or impairment.is_noop:
        backend.clear(target)
        description = "no impairment"
    else:
        backend.set(target, impairment)
        description = impairment.describe()
    _record(lab, {target.label: description})
    return target.label, description


def lateness_snapshot(lab: LabNetwork, also: Sequence[tuple[int, int]] = ()
                      ) -> dict[str, LinkLateness]:
    """The emulator's own lateness so far on every direction the topology
    impairs, and on the (link index, direction) pairs `also` names (a link
    profile's), by link label (take one before and one after a call and use
    `LinkLateness.since`); empty when no link is impaired or the backend has
    no such figure (netem)."""
    wanted = [(index, direction) for index, direction, _ in topology_impairments(lab.topology)]
    wanted += [pair for pair in also if pair not in wanted]
    if not wanted:
        return {}
    backend = backend_for(lab)
    snapshot = {}
    for index, direction in wanted:
        target = target_for(lab, index, direction)
        lateness = backend.lateness(target)
        if lateness is not None:
            snapshot[target.label] = lateness
    return snapshot


def _record(lab: LabNetwork, applied: dict[str, str]) -> None:
    lab.registry.state.link_impairments.update(applied)
    lab.registry.save()

