"""Which link backend a lab uses: netem where the kernel has it, else the
userspace daemon; the topology (`link_backend:`) or the command line
(`--link-backend`, passed on as CALLWALL_LINK_BACKEND) can force one.

Capabilities are probed, never guessed from the kernel version: netem by
adding a netem qdisc to a throwaway veth pair created inside a lab host's
namespace (removed again at once), the userspace backend by finding the
daemon binary and adding, then deleting, an NFQUEUE rule on that veth.
The answer is cached per run (in memory and in the run's state).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import NetlinkError

from harness.link.backend import BACKEND_CHOICES, BackendName
from harness.link.impaird_binary import impaird_path
from harness.netns.host import LabHost

ENV_OVERRIDE = "CALLWALL_LINK_BACKEND"
PROBE_VETH = ("cwprobe0", "cwprobe1")
_cache: dict[str, BackendName] = {}


class NoLinkBackend(RuntimeError):
    pass


@dataclass(frozen=True)
class Probe:
    """One capability: usable, or the reason it is not."""

    usable: bool
    reason: str = ""


@contextmanager
def probe_veth(host: LabHost) -> Iterator[int]:
    """A veth pair inside `host` for probing; yields the first end's index and
    deletes the pair (deleting one end removes both) whatever happens."""
    with host.netlink() as ns:
        ns.link("add", ifname=PROBE_VETH[0], kind="veth", peer=PROBE_VETH[1])
        index = ns.link_lookup(ifname=PROBE_VETH[0])[0]
        try:
            ns.link("set", index=index, state="up")
            yield index
        finally:
            ns.link("del", index=index)


def probe_netem(host: LabHost) -> Probe:
    try:
        with probe_veth(host) as index, host.netlink() as ns:
            ns.tc("add", kind="netem", index=index, handle="1:", delay=1000)
    except NetlinkError as exc:
        return Probe(False, f"the kernel refuses a netem qdisc ({exc.args[-1]}): "
                            "sch_netem is not built or loadable")
    return Probe(True)


def probe_nfqueue(host: LabHost) -> Probe:
    rule = ["POSTROUTING", "-o", PROBE_VETH[0], "-j", "NFQUEUE", "--queue-num", "999",
            "--queue-bypass"]
    with probe_veth(host):
        added = host.run(["iptables", "-w", "-t", "mangle", "-A", *rule], check=False)
        if added.returncode != 0:
            return Probe(False, "iptables cannot add an NFQUEUE rule: "
                                f"{added.stderr.strip() or added.returncode}")
        host.run(["iptables", "-w", "-t", "mangle", "-D", *rule])
    return Probe(True)


def probe_impaird() -> Probe:
    try:
        path = impaird_path()
    except (FileNotFoundError, RuntimeError) as exc:
        return Probe(False, str(exc))
    return Probe(True, str(path))


def requested_backend(topology_choice: str) -> str:
    """The command line's choice wins over the topology's."""
    choice = os.environ.get(ENV_OVERRIDE, "") or topology_choice
    if choice not in BACKEND_CHOICES:
        raise NoLinkBackend(f"{ENV_OVERRIDE}={choice!r}: expected one of "
                            f"{', '.join(BACKEND_CHOICES)}")
    return choice


def choose_backend(run_id: str, host: LabHost, topology_choice: str = "auto") -> BackendName:
    """The backend this run uses, probed once per run inside `host`."""
    if run_id in _cache:
        return _cache[run_id]
    choice = requested_backend(topology_choice)
    netem = probe_netem(host) if choice in ("auto", "netem") else Probe(False, "not asked for")
    if choice == "netem" and not netem.usable:
        raise NoLinkBackend(f"link backend netem was asked for, but {netem.reason}")
    chosen: BackendName = "netem" if netem.usable else _userspace_or_fail(host, netem)
    _cache[run_id] = chosen
    return chosen


def _userspace_or_fail(host: LabHost, netem: Probe) -> BackendName:
    problems = [p.reason for p in (probe_impaird(), probe_nfqueue(host)) if not p.usable]
    if problems:
        raise NoLinkBackend("no link backend works here: netem: " + netem.reason
                            + "; userspace: " + "; ".join(problems))
    return "userspace"


def remember(run_id: str, backend: BackendName) -> None:
    """For a process attaching to a running lab: the backend its owner chose."""
    _cache[run_id] = backend
