"""What the testbed needs of a lab substrate: something that creates one
namespace-holding process per topology host and the links between them, makes
the :class:`LabHost` objects through which programs run in those hosts, and
takes it all down again.

:class:`harness.netns.mininet_backend.MininetLab` is the real one;
``harness.testing.fake.FakeBackend`` builds hosts without namespaces, for unit
tests of the orchestration above.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from harness.netns.host import LabHost
from harness.netns.registry import Registry
from harness.spec.topology import Topology

# Called by `build` with (topology host name, PID of the process that holds
# the host) as soon as that process exists, so it is owned before anything
# later can fail.
HostCallback = Callable[[str, int], None]


class LabBackend(Protocol):
    """The substrate of one lab (one run)."""

    def build(self, topology: Topology, on_host: HostCallback) -> None:
        """Create every host of `topology` (calling `on_host(name, pid)` for
        each as soon as it exists) and every link."""
        ...

    def stop(self) -> None:
        """Remove every host and link `build` created (also after a partial
        build). Called once, after the run's services were stopped."""
        ...

    def lab_host(self, name: str, role: str, pid: int, registry: Registry) -> LabHost:
        """The object through which the testbed and the layers below it run
        programs in host `name` (held by `pid`)."""
        ...
