"""A lab: a topology brought up as namespaces, links and services, owned by
one run, and taken down again without leaving anything behind.

`Lab.create(...).up()` builds a lab in this process (tests, `callwall run`);
`Lab.attach(registry)` works on a lab that another process (the supervisor
behind `callwall up`) owns, for `exec`, `policy apply` and `down`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from harness.censor.applier import apply_plan
from harness.censor.compiler import bindings_for, compile_policy
from harness.censor.plan import CensorPlan
from harness.link.apply import apply_topology_impairments
from harness.netns.backend import LabBackend
from harness.netns.directory import ServiceDirectory
from harness.netns.host import LabHost
from harness.netns.mininet_backend import MininetLab
from harness.netns.nat import nat_ruleset
from harness.netns.netconfig import configure_host
from harness.netns.network import LabNetwork
from harness.netns.registry import RUNS_ROOT, Registry, stale_runs
from harness.netns.stop_signals import stop_signals_deferred
from harness.services.lab_services import start_lab_services
from harness.spec.policy import Policy
from harness.spec.topology import Topology, load_topology


class Lab:
    def __init__(self, topology: Topology, registry: Registry,
                 backend: LabBackend | None = None) -> None:
        self.topology = topology
        self.registry = registry
        self.backend = backend
        self.hosts: dict[str, LabHost] = {}
        self.services: ServiceDirectory | None = None
        self.progress = False
        self._attach_recorded_hosts()

    @classmethod
    def create(cls, topology_path: Path, root: Path = RUNS_ROOT,
               run_id: str | None = None, backend: LabBackend | None = None) -> Lab:
        """A lab of `topology_path`, not built yet, on `backend` (Mininet unless
        given; e.g. harness.testing.fake.FakeBackend)."""
        topology = load_topology(topology_path)
        remove_stale_labs(root)
        registry = Registry.create(str(topology_path.resolve()), root, run_id)
        return cls(topology, registry, backend if backend is not None
                   else MininetLab(registry.state.run_id, registry))

    @classmethod
    def attach(cls, registry: Registry) -> Lab:
        lab = cls(load_topology(Path(registry.state.topology)), registry)
        lab.services = registry.state.services
        return lab

    @property
    def network(self) -> LabNetwork:
        """The namespaces alone, for the layers below the testbed."""
        return LabNetwork(self.topology, self.hosts, self.registry)

    @property
    def run_id(self) -> str:
        return self.registry.state.run_id

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down(self.progress)

    def up(self, progress: bool = False) -> None:
        """Build, configure and start everything; on any failure, remove it all."""
        self.progress = progress
        try:
            self._step("creating hosts and links", self._build)
            self._step("configuring addresses, routes and NAT", self._configure)
            if any(link.impair is not None for link in self.topology.links):
                self._step("impairing links", self._impair_links)
            self._step("starting relay, STUN and signalling", self._start_services)
            self.registry.set_status("ready")
        except BaseException:
            self.down()
            raise

    def down(self, progress: bool = False) -> None:
        """Remove exactly what this run created: services, then the hosts.
        Stop signals wait until it is done, so teardown is never cut short."""
        with stop_signals_deferred():
            if progress and self.registry.dir.exists():
                print(f"[{self.run_id}] removing the lab", file=sys.stderr, flush=True)
            self.registry.stop_services()
            if self.backend is not None:
                try:
                    self.backend.stop()
                finally:
                    self.backend = None
            self.registry.remove()

    def host(self, name: str) -> LabHost:
        return self.network.host(name)

    def host_with_role(self, role: str) -> LabHost:
        return self.network.host_with_role(role)

    def apply_policy(self, policy: Policy) -> CensorPlan:
        return self.apply_plan(compile_policy(policy, bindings_for(self.topology)))

    def apply_plan(self, plan: CensorPlan) -> CensorPlan:
        previous = self.registry.state.tc_devices
        apply_plan(self.host_with_role("censor"), plan, previous)
        (self.registry.files / "policy.nft").write_text(plan.nft_ruleset)
        self.registry.state.policy = plan.policy
        self.registry.state.tc_devices = sorted({op.dev for op in plan.tc_ops})
        self.registry.save()
        return plan

    def _step(self, what: str, action: Callable[[], None]) -> None:
        if self.progress:
            print(f"[{self.run_id}] {what}", file=sys.stderr, flush=True)
        action()

    def _build(self) -> None:
        assert self.backend is not None
        self.backend.build(self.topology, self._own_host)

    def _own_host(self, name: str, pid: int) -> None:
        self.registry.record_host(name, pid)
        assert self.backend is not None
        self.hosts[name] = self.backend.lab_host(name, self.topology.hosts[name].role, pid,
                                                 self.registry)

    def _attach_recorded_hosts(self) -> None:
        for name, owned in self.registry.state.hosts.items():
            role = self.topology.hosts[name].role
            self.hosts[name] = LabHost(name, role, owned.pid, self.registry)

    def _configure(self) -> None:
        for host in self.hosts.values():
            configure_host(host, self.topology)
            nat = self.topology.hosts[host.name].nat
            if nat is not None:
                outside = self.topology.interface_owning(host.name, nat.outside).name
                host.run(["nft", "-f", "-"], input_text=nat_ruleset(nat, outside))

    def _impair_links(self) -> None:
        apply_topology_impairments(self.network)

    def _start_services(self) -> None:
        self.services = start_lab_services(self.network)
        self.registry.state.services = self.services
        self.registry.set_status("services")


def remove_stale_labs(root: Path = RUNS_ROOT) -> list[str]:
    """Remove labs whose owning process died (e.g. SIGKILL): exactly what their
    state files record. Called whenever a new lab starts, and by `callwall clean`."""
    removed = []
    for run in stale_runs(root):
        # By the state file alone: the topology file may have changed or gone since.
        with stop_signals_deferred():
            run.remove()
        removed.append(run.state.run_id)
        print(f"callwall: removed stale lab {run.state.run_id} (its owner "
              f"{run.state.owner_pid} is gone)", file=sys.stderr)
    return removed
