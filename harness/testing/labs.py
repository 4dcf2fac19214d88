"""Labs for tests: one factory that every fixture uses, whatever its scope
(the plugin's module-scoped `lab`, the scenario matrix's per-worker session
lab, the fake lab), and the function behind the plugin's `call` fixture.

:func:`running_lab` builds a lab, yields it running, takes it down, and then
checks that it left nothing behind: no state directory, no recorded process
(host shell or service) still alive, and the run no longer listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import paths
from harness.netns.backend import LabBackend
from harness.netns.registry import RUNS_ROOT, OwnedProcess, list_runs
from harness.spec.policy import Policy, load_policy
from harness.testbed import Lab

if TYPE_CHECKING:  # harness.session and harness.calls are imported when a call is placed
    from harness.faults import Fault
    from harness.measure.record import CallRecord


class LabLeftBehind(AssertionError):
    """A lab was taken down but something it owned is still there."""


@contextmanager
def running_lab(topology: str | Path = paths.DEFAULT_TOPOLOGY, *, root: Path | None = None,
                run_id: str | None = None, backend: LabBackend | None = None,
                progress: bool = False) -> Iterator[Lab]:
    """A lab of `topology` (a name in topologies/ or a path), up and running
    for the block, on `backend` (Mininet unless given), its state under `root`
    (the registry's RUNS_ROOT unless given). LabLeftBehind after the block if
    taking it down left anything."""
    lab = Lab.create(paths.topology_path(str(topology)), root=root or RUNS_ROOT,
                     run_id=run_id, backend=backend)
    owned: list[OwnedProcess] = []
    with lab:
        lab.up(progress)
        yield lab
        owned = [*lab.registry.state.hosts.values(), *lab.registry.state.processes]
    check_nothing_left(lab, owned, root or RUNS_ROOT)


def check_nothing_left(lab: Lab, owned: list[OwnedProcess], root: Path) -> None:
    """LabLeftBehind unless `lab` (taken down) left no state and none of the
    processes it `owned` runs."""
    left = []
    if lab.registry.dir.exists():
        left.append(f"its state directory {lab.registry.dir}")
    left += [f"{o.what} in {o.host} (pid {o.pid})" for o in owned if o.alive()]
    if lab.run_id in [run.state.run_id for run in list_runs(root)]:
        left.append("its entry in the list of runs")
    if left:
        raise LabLeftBehind(f"lab {lab.run_id} was taken down but left: " + "; ".join(left))


class CallPlacer:
    """Places judged calls on one running lab, each in its own directory under
    `calls_dir` (what the plugin's `call` fixture returns)::

        record = call("turn-relay-block", "turn-tls-443", media_s=4.0)

    `policy` is a Policy, a name in policies/ or a path to a policy file;
    `settings` are harness.calls.CallSettings fields. Returns the CallRecord of
    harness.session.judged_call; the call's files (peer logs and results,
    record.json, audio, pcap) are in ``calls_dir/<nn>-<policy>--<profile>--<strategy>/``.
    """

    def __init__(self, lab: Lab, calls_dir: Path) -> None:
        self.lab = lab
        self.calls_dir = calls_dir
        self.placed: list[Path] = []

    def __call__(self, policy: Policy | str | Path, strategy: str, *,
                 profile: str = "webrtc", fault: Fault | None = None,
                 **settings: Any) -> CallRecord:
        from harness.calls import CallSettings
        from harness.session import judged_call

        resolved = self.policy(policy)
        name = f"{len(self.placed) + 1:02d}-{resolved.name}--{profile}--{strategy}"
        call_dir = self.calls_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.placed.append(call_dir)
        return judged_call(self.lab, resolved, strategy, call_dir, CallSettings(**settings),
                           fault=fault, profile=profile)

    def policy(self, policy: Policy | str | Path) -> Policy:
        """`policy` loaded (if it is not one yet) and checked against the lab's topology."""
        if isinstance(policy, Policy):
            return policy
        return load_policy(paths.policy_path(str(policy)), self.lab.topology.sets.keys())
