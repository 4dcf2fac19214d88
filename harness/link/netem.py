"""The netem backend: the kernel's sch_netem as the root qdisc of the egress
interface, set through pyroute2.

`compile_netem` is a pure function (unit-tested without root): it gives the
exact keyword arguments for pyroute2's `tc("replace", ...)`, and, when the
impairment needs attributes pyroute2 cannot encode (its netem module maps
TCA_NETEM_LOSS to 'none', so no Gilbert-Elliott model, leaves delay
distributions as a TODO, and has no PRNG seed), the `tc` argv that sets the
whole qdisc instead: netem options are replaced as one block, so splitting
them between pyroute2 and tc would reset one half.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.link.backend import LinkBackend, LinkBackendError, LinkTarget
from harness.netns.host import LabHost
from harness.spec.impairment import Impairment

ROOT_HANDLE = "1:"
CHILD_PARENT = "1:1"
CHILD_HANDLE = "10:"


@dataclass(frozen=True)
class NetemPlan:
    """How to put `impairment` on `dev`. Exactly one of `kwargs` (pyroute2) or
    `tc_argv` is used for the netem qdisc; `child_fifo` keeps packets in order
    (a pfifo under netem makes it release them in arrival order)."""

    dev: str
    kwargs: dict[str, Any]
    tc_argv: list[str] | None = None
    tc_reasons: tuple[str, ...] = ()
    child_fifo: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def uses_tc(self) -> bool:
        return self.tc_argv is not None


def _us(ms: float) -> int:
    return round(ms * 1000)


def pyroute2_kwargs(impairment: Impairment) -> dict[str, Any]:
    """The keyword arguments for `ns.tc("replace", index=..., **kwargs)`; pyroute2
    takes delay and jitter in microseconds, percentages as numbers, rate in bytes/s."""
    kwargs: dict[str, Any] = {"kind": "netem", "handle": ROOT_HANDLE,
                              "limit": impairment.limit_packets}
    if impairment.delay_ms:
        kwargs["delay"] = _us(impairment.delay_ms)
    if impairment.jitter_ms:
        kwargs["jitter"] = _us(impairment.jitter_ms)
    if impairment.loss_pct:
        kwargs["loss"] = impairment.loss_pct
    if impairment.duplicate_pct:
        kwargs["duplicate"] = impairment.duplicate_pct
    if impairment.reorder_pct:
        kwargs["prob_reorder"] = impairment.reorder_pct
    if impairment.rate_kbit:
        kwargs["rate"] = round(impairment.rate_kbit * 1000 / 8)
    return kwargs


def _needs_tc(impairment: Impairment, tc_has_seed: bool) -> tuple[str, ...]:
    reasons = []
    if impairment.gemodel is not None:
        reasons.append("gemodel (pyroute2 cannot encode TCA_NETEM_LOSS)")
    if impairment.jitter_ms and impairment.distribution != "uniform":
        reasons.append(f"distribution {impairment.distribution} (pyroute2 cannot encode "
                       "TCA_NETEM_DELAY_DIST)")
    if _is_random(impairment) and tc_has_seed:
        reasons.append("seed (pyroute2 cannot encode TCA_NETEM_PRNG_SEED)")
    return tuple(reasons)


def _is_random(impairment: Impairment) -> bool:
    return bool(impairment.jitter_ms or impairment.loss_pct or impairment.gemodel
                or impairment.duplicate_pct or impairment.reorder_pct)


def tc_argv(dev: str, impairment: Impairment, with_seed: bool) -> list[str]:
    """`tc qdisc replace ... netem ...` with every parameter, as an argv list."""
    argv = ["tc", "qdisc", "replace", "dev", dev, "root", "handle", ROOT_HANDLE, "netem",
            "limit", str(impairment.limit_packets)]
    if impairment.delay_ms or impairment.jitter_ms:
        argv += ["delay", f"{_us(impairment.delay_ms)}us"]
        if impairment.jitter_ms:
            argv += [f"{_us(impairment.jitter_ms)}us", "distribution", impairment.distribution]
    if impairment.loss_pct:
        argv += ["loss", "random", f"{impairment.loss_pct:g}%"]
    if impairment.gemodel is not None:
        g = impairment.gemodel
        argv += ["loss", "gemodel", f"{g.p_pct:g}%", f"{g.r_pct:g}%", f"{g.bad_loss_pct:g}%",
                 f"{g.good_loss_pct:g}%"]
    if impairment.duplicate_pct:
        argv += ["duplicate", f"{impairment.duplicate_pct:g}%"]
    if impairment.reorder_pct:
        argv += ["reorder", f"{impairment.reorder_pct:g}%"]
    if impairment.rate_kbit:
        argv += ["rate", f"{round(impairment.rate_kbit * 1000)}bit"]
    if with_seed and _is_random(impairment):
        argv += ["seed", str(impairment.seed)]
    return argv


def compile_netem(dev: str, impairment: Impairment, tc_has_seed: bool = True) -> NetemPlan:
    """The plan for one interface. Pure: no netlink, no processes."""
    reasons = _needs_tc(impairment, tc_has_seed)
    notes = []
    if _is_random(impairment) and not tc_has_seed:
        notes.append("this tc has no 'seed' (iproute2 >= 6.3 has): netem's random choices "
                     "will not repeat across runs")
    child = None
    if impairment.keep_order and impairment.jitter_ms:
        child = {"kind": "pfifo", "parent": CHILD_PARENT, "handle": CHILD_HANDLE,
                 "limit": impairment.limit_packets}
    return NetemPlan(dev=dev, kwargs=pyroute2_kwargs(impairment),
                     tc_argv=tc_argv(dev, impairment, tc_has_seed) if reasons else None,
                     tc_reasons=reasons, child_fifo=child, notes=tuple(notes))


def tc_supports_seed(host: LabHost) -> bool:
    """iproute2 >= 6.3 lists `seed` in netem's usage text."""
    result = host.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "help"], check=False)
    return "seed" in (result.stdout + result.stderr)


class NetemBackend(LinkBackend):
    """One netem root qdisc (and, for keep_order with jitter, its pfifo child)
    per impaired interface; `clear` deletes exactly that root qdisc."""

    name = "netem"

    def __init__(self) -> None:
        self._seed_support: dict[int, bool] = {}

    def plan(self, target: LinkTarget, impairment: Impairment) -> NetemPlan:
        host = target.host
        if host.pid not in self._seed_support:
            self._seed_support[host.pid] = tc_supports_seed(host)
        return compile_netem(target.interface, impairment, self._seed_support[host.pid])

    def apply(self, target: LinkTarget, impairment: Impairment) -> None:
        plan = self.plan(target, impairment)
        if plan.tc_argv is not None:
            target.host.run(plan.tc_argv)
        else:
            self._netlink(target, "replace", plan.kwargs)
        if plan.child_fifo is not None:
            self._netlink(target, "replace", plan.child_fifo)

    def update(self, target: LinkTarget, impairment: Impairment) -> None:
        # `replace` changes the qdisc in place: packets already held stay held.
        self.apply(target, impairment)

    def clear(self, target: LinkTarget) -> None:
        if self.is_applied(target):
            self._netlink(target, "del", {"root": True})

    def is_applied(self, target: LinkTarget) -> bool:
        result = target.host.run(["tc", "qdisc", "show", "dev", target.interface, "root"])
        return " netem " in f" {result.stdout} "

    @staticmethod
    def _netlink(target: LinkTarget, command: str, kwargs: dict[str, Any]) -> None:
        with target.host.netlink() as ns:
            links = ns.link_lookup(ifname=target.interface)
            if not links:
                raise LinkBackendError(f"{target.label}: no such interface")
            try:
                ns.tc(command, index=links[0], **kwargs)
            except Exception as exc:  # pyroute2 raises NetlinkError and plain Exceptions
                raise LinkBackendError(f"{target.label}: tc {command} {kwargs.get('kind', '')} "
                                       f"failed: {exc}") from exc

