"""The netem backend's pure compile step: the exact pyroute2 keyword arguments,
and the `tc` argv for what pyroute2 cannot encode. No root, no netem needed."""

from __future__ import annotations

import pytest
from pyroute2.netlink.rtnl.tcmsg import sched_netem
from pyroute2.netlink.rtnl.tcmsg.common import percent2u32

from harness.link.netem import compile_netem
from harness.spec.impairment import GilbertElliott, Impairment


def test_plain_delay_loss_rate_use_pyroute2_only() -> None:
    impairment = Impairment(delay_ms=20, jitter_ms=4, distribution="uniform", keep_order=False,
                            loss_pct=1.5, rate_kbit=2000, duplicate_pct=0.5, reorder_pct=3,
                            limit_packets=500)
    plan = compile_netem("eth0", impairment, tc_has_seed=False)
    assert plan.kwargs == {"kind": "netem", "handle": "1:", "limit": 500, "delay": 20_000,
                           "jitter": 4000, "loss": 1.5, "duplicate": 0.5, "prob_reorder": 3,
                           "rate": 250_000}
    assert plan.tc_argv is None and plan.child_fifo is None
    assert plan.notes and "seed" in plan.notes[0]  # told, not silently unreproducible


def test_pyroute2_encodes_the_kwargs() -> None:
    """The kwargs go through pyroute2's own netem encoder to the values netem reads."""
    plan = compile_netem("eth0", Impairment(delay_ms=20, loss_pct=1.5, rate_kbit=2000),
                         tc_has_seed=False)
    options = sched_netem.get_parameters(dict(plan.kwargs))
    assert options["loss"] == percent2u32(1.5)
    assert options["limit"] == 1000
    assert ["TCA_NETEM_RATE", {"rate": 250_000, "packet_overhead": 0, "cell_size": 0,
                               "cell_overhead": 0}] in options["attrs"]
    assert options["delay"] >= 20_000  # microseconds scaled to the kernel's ticks


def test_gemodel_goes_through_tc_with_every_parameter() -> None:
    impairment = Impairment(delay_ms=30, jitter_ms=5, gemodel=GilbertElliott(2, 25, 90, 1),
                            seed=77)
    plan = compile_netem("eth1", impairment, tc_has_seed=True)
    assert plan.uses_tc
    assert plan.tc_argv == [
        "tc", "qdisc", "replace", "dev", "eth1", "root", "handle", "1:", "netem",
        "limit", "1000", "delay", "30000us", "5000us", "distribution", "normal",
        "loss", "gemodel", "2%", "25%", "90%", "1%", "seed", "77"]
    assert any("gemodel" in reason for reason in plan.tc_reasons)
    assert plan.child_fifo == {"kind": "pfifo", "parent": "1:1", "handle": "10:",
                               "limit": 1000}


@pytest.mark.parametrize("distribution", ["normal", "pareto", "paretonormal"])
def test_delay_distributions_need_tc(distribution: str) -> None:
    impairment = Impairment(delay_ms=30, jitter_ms=5, distribution=distribution)  # type: ignore[arg-type]
    plan = compile_netem("eth0", impairment, tc_has_seed=False)
    assert plan.tc_argv is not None
    assert plan.tc_argv[plan.tc_argv.index("distribution") + 1] == distribution
    assert "seed" not in plan.tc_argv


def test_seed_forces_tc_only_when_tc_knows_it_and_something_is_random() -> None:
    assert compile_netem("eth0", Impairment(loss_pct=1), tc_has_seed=True).tc_argv == [
        "tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "netem", "limit",
        "1000", "loss", "random", "1%", "seed", "1"]
    fixed = compile_netem("eth0", Impairment(delay_ms=10, rate_kbit=64), tc_has_seed=True)
    assert fixed.tc_argv is None  # nothing random: pyroute2 suffices


def test_argv_never_carries_shell_text() -> None:
    plan = compile_netem("eth0", Impairment(delay_ms=1, jitter_ms=1, distribution="pareto"))
    assert plan.tc_argv is not None
    assert all(" " not in arg and ";" not in arg for arg in plan.tc_argv)
