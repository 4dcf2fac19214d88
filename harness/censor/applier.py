"""Applying a CensorPlan inside the censor host: the thin, root-only layer.

The nftables ruleset is loaded with one `nft -f -` (one atomic transaction:
the previous policy is replaced whole or not at all). tc operations go through
pyroute2 netlink in the censor's namespace.
"""

from __future__ import annotations

from harness.censor.plan import NFT_FAMILY, NFT_TABLE, CensorPlan, TcQdisc
from harness.lab.host import LabHost


class ApplyError(RuntimeError):
    pass


def apply_plan(censor: LabHost, plan: CensorPlan) -> None:
    result = censor.run(["nft", "-f", "-"], input_text=plan.nft_ruleset, check=False)
    if result.returncode != 0:
        raise ApplyError(f"nft refused the ruleset of policy {plan.policy!r}: "
                         f"{result.stderr.strip()}")
    for op in plan.tc_ops:
        apply_qdisc(censor, op)


def apply_qdisc(censor: LabHost, op: TcQdisc) -> None:
    with censor.netlink() as ns:
        found = ns.link_lookup(ifname=op.dev)
        if not found:
            raise ApplyError(f"censor {censor.name} has no interface {op.dev!r}")
        ns.tc(op.op, kind=op.kind, index=found[0], handle="1:", **dict(op.params))


def read_ruleset(censor: LabHost) -> str:
    """The censor's live policy table, as nft prints it (with counters)."""
    return censor.run(["nft", "list", "table", NFT_FAMILY, NFT_TABLE]).stdout
