"""What the layers above the namespaces need of one running lab: its
topology, its hosts by name and its ownership registry.

Link emulation, the censor and the services take a :class:`LabNetwork`
instead of the whole testbed (harness.testbed), so they never import it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.netns.host import LabHost
from harness.netns.registry import Registry
from harness.spec.topology import Topology


class UnknownHost(LookupError):
    pass


@dataclass(frozen=True)
class LabNetwork:
    topology: Topology
    hosts: Mapping[str, LabHost]
    registry: Registry

    @property
    def run_id(self) -> str:
        return self.registry.state.run_id

    def host(self, name: str) -> LabHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise UnknownHost(f"no host {name!r} in lab {self.run_id}; hosts are: "
                              f"{', '.join(self.hosts)}") from None

    def host_with_role(self, role: str) -> LabHost:
        return self.host(self.topology.host_with_role(role))

    def address_of(self, name: str) -> str:
        return str(self.topology.address_of(name))
