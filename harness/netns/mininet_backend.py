"""Mininet as the lab substrate: hosts are namespaces held by Mininet host
shells, links are veth pairs created directly inside the two namespaces.

No controller, no switch, no root-namespace interface: a lab touches the root
namespace only through the processes it starts. Mininet's `fixLimits()`
(which raises root-namespace sysctls) is skipped on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.netns.backend import HostCallback
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
    net: Any = None
    nodes: dict[str, Any] = field(default_factory=dict)

    def build(self, topology: Topology, on_host: HostCallback) -> None:
        """Create every host (calling `on_host(name, pid)` as soon as each shell
        exists, so it is owned before anything can fail) and every link."""
        _require_mininet()
        setLogLevel("error")
        Mininet.inited = True  # skip fixLimits(): it changes root-namespace sysctls
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        for name in topology.hosts:
            node = self.net.addHost(f"{self.run_id}-{name}", cls=Host, inNamespace=True)
            self.nodes[name] = node
            on_host(name, node.pid)
        for link in topology.links:
            self._add_link(topology, link.a.host, link.b.host)

    def _add_link(self, topology: Topology, a: str, b: str) -> None:
        name_a = _next_interface(self.nodes[a])
        name_b = _next_interface(self.nodes[b])
        self.net.addLink(self.nodes[a], self.nodes[b], cls=Link,
                         intfName1=name_a, intfName2=name_b)

    def stop(self) -> None:
        """Hang up every host shell; the namespaces, and the veths inside them,
        go with the shells. (Mininet's net.stop() would first delete each
        interface through its shell, and blocks for good if a shell is gone.)"""
        for node in self.nodes.values():
            node.terminate()
        self.nodes = {}
        self.net = None

    def lab_host(self, name: str, role: str, pid: int, registry: Registry) -> LabHost:
        """Programs run in a Mininet host through nsenter into its shell's namespace."""
        return LabHost(name, role, pid, registry)


def _next_interface(node: Any) -> str:
    return f"eth{len([i for i in node.intfList() if i.name != 'lo'])}"


def _require_mininet() -> None:
    if MININET_IMPORT_ERROR is not None:
        raise BackendUnavailable(
            "Mininet is not importable (install Debian's 'mininet' package and use a venv "
            f"with system site-packages): {MININET_IMPORT_ERROR}"
        )
