"""Applying a CensorPlan inside the censor host: the thin, root-only layer.

The nftables ruleset is loaded with one `nft -f -` (one atomic transaction:
the previous policy is replaced whole or not at all). tc operations go through
pyroute2 netlink in the censor's namespace, after the ruleset; root qdiscs a
previous plan installed and the new one does not are removed.
"""

from __future__ import annotations

from collections.abc import Collection

from pyroute2 import NetNS

from harness.censor.plan import CensorPlan
from harness.lab.host import LabHost

ROOT_HANDLE = "1:"


class ApplyError(RuntimeError):
    pass


def apply_plan(censor: LabHost, plan: CensorPlan, previous_tc_devices: Collection[str] = ()
               ) -> None:
    result = censor.run(["nft", "-f", "-"], input_text=plan.nft_ruleset, check=False)
    if result.returncode != 0:
        raise ApplyError(f"nft refused the ruleset of policy {plan.policy!r}: "
                         f"{result.stderr.strip()}")
    wanted = {op.dev for op in plan.tc_ops}
    with censor.netlink() as ns:
        for dev in sorted(set(previous_tc_devices) - wanted):
            ns.tc("del", index=_index(censor, ns, dev), root=True)
        for op in plan.tc_ops:
            ns.tc(op.op, kind=op.kind, index=_index(censor, ns, op.dev), handle=ROOT_HANDLE,
                  **dict(op.params))


def _index(censor: LabHost, ns: NetNS, dev: str) -> int:
    found = ns.link_lookup(ifname=dev)
    if not found:
        raise ApplyError(f"censor {censor.name} has no interface {dev!r}")
    return int(found[0])


def root_qdisc_kinds(censor: LabHost, dev: str) -> list[str]:
    """The kinds of the root qdiscs on `dev` (e.g. ['noqueue'] or ['tbf'])."""
    with censor.netlink() as ns:
        index = _index(censor, ns, dev)
        return [str(q.get_attr("TCA_KIND")) for q in ns.get_qdiscs(index=index)
                if q["parent"] == 0xFFFFFFFF]
