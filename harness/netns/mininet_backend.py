"""Mininet as the lab substrate: hosts are namespaces held by Mininet host
shells, links are veth pairs created directly inside the two namespaces.

No controller, no switch, no root-namespace interface: a lab touches the root
namespace only through the processes it starts. Mininet's `fixLimits()`
(which raises root-namespace sysctls) is skipped on purpose.

A host that names an image is a container instead of a Mininet host
(harness.netns.container_hosts): its links are veth pairs moved into the
container's namespace. That needs the run's registry, to record each
container before it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.netns.backend import HostCallback
from harness.netns.container_hosts import (
    LabContainers,
    add_veth,
    interface_names,
    start_host_container,
)
from harness.netns.host import LabHost
from harness.netns.registry import Registry
from harness.spec.topology import Topology

try:
    from mininet.link import Link
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import Host
except ImportError as exc:  # pragma: no cover - depends on the machine
    MININET_IMPORT_ERROR: ImportError | None = exc
else:
    MININET_IMPORT_ERROR = None


class BackendUnavailable(RuntimeError):
    pass


@dataclass
class MininetLab:
    """The Mininet objects of one lab, by topology host name (a
    harness.netns.backend.LabBackend)."""

    run_id: str
    registry: Registry | None = None
    net: Any = None
    nodes: dict[str, Any] = field(default_factory=dict)
    # Hosts held by a container: topology host name -> the container's init PID.
    container_pids: dict[str, int] = field(default_factory=dict)
    containers: LabContainers | None = None

    def build(self, topology: Topology, on_host: HostCallback) -> None:
        """Create every host (calling `on_host(name, pid)` as soon as each shell
        or container exists, so it is owned before anything can fail) and
        every link."""
        _require_mininet()
        setLogLevel("error")
        Mininet.inited = True  # skip fixLimits(): it changes root-namespace sysctls
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        for name, spec in topology.hosts.items():
            if spec.image is not None:
                pid = start_host_container(self._containers(), name, spec)
                self.container_pids[name] = pid
                on_host(name, pid)
                continue
            node = self.net.addHost(f"{self.run_id}-{name}", cls=Host, inNamespace=True)
            self.nodes[name] = node
            on_host(name, node.pid)
        ends = [(link.a.host, link.b.host) for link in topology.links]
        for index, ((a, b), (name_a, name_b)) in enumerate(zip(ends, interface_names(ends),
                                                               strict=True)):
            self._add_link(index, a, name_a, b, name_b)

    def _containers(self) -> LabContainers:
        if self.containers is None:
            if self.registry is None:
                raise BackendUnavailable("a topology host with an image needs the run's "
                                         "registry (MininetLab(run_id, registry))")
            self.containers = LabContainers(self.registry)
        return self.containers

    def _add_link(self, index: int, a: str, name_a: str, b: str, name_b: str) -> None:
        if a in self.nodes and b in self.nodes:
            self.net.addLink(self.nodes[a], self.nodes[b], cls=Link,
                             intfName1=name_a, intfName2=name_b)
            return
        # A container end: the pair is made in the other end's namespace (or
        # the first container's), and one end moved into the container's.
        add_veth(self._pid(a), name_a, self._pid(b), name_b, temp_name=f"cwveth{index}")

    def _pid(self, host: str) -> int:
        return int(self.nodes[host].pid) if host in self.nodes else self.container_pids[host]

    def stop(self) -> None:
        """Hang up every host shell; the namespaces, and the veths inside them,
        go with the shells. (Mininet's net.stop() would first delete each
        interface through its shell, and blocks for good if a shell is gone.)
        Host containers are removed by the registry, which recorded them; the
        engine is let go here."""
        for node in self.nodes.values():
            node.terminate()
        self.nodes = {}
        self.net = None
        if self.containers is not None:
            try:
                if self.registry is not None:
                    self.registry.remove_containers()
            finally:
                self.containers.close()
                self.containers = None

    def lab_host(self, name: str, role: str, pid: int, registry: Registry) -> LabHost:
        """Programs run in a Mininet host through nsenter into its shell's namespace."""
        return LabHost(name, role, pid, registry)


def _require_mininet() -> None:
    if MININET_IMPORT_ERROR is not None:
        raise BackendUnavailable(
            "Mininet is not importable (install Debian's 'mininet' package and use a venv "
            f"with system site-packages): {MININET_IMPORT_ERROR}"
        )
