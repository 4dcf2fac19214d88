"""Applying a CensorPlan inside the censor host: the thin, root-only layer.

The nftables ruleset is loaded with one `nft -f -` (one atomic transaction:
the previous policy is replaced whole or not at all). tc operations go through
pyroute2 netlink in the censor's namespace, after the ruleset; root qdiscs a
previous plan installed and the new one does not are removed.

Userspace stages (classifiers nft cannot express) are processes in the censor,
one per `plan.stages` element, recorded in the run's registry; a new plan
stops the previous plan's stages first. Their packets reach them through the
plan's `iptables_rules`, which live in a chain of our own (`CALLWALL` in the
mangle table, jumped to from FORWARD), flushed and refilled on every apply and
removed when the plan has none. Only this chain is ever touched.

A plan's DNS removal (names taken out of the national DNS) is applied last,
in the lab's resolver rather than in the censor (harness/censor/dns.py); a
plan without one puts the removed names back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from pyroute2 import NetNS

from harness.censor.dns import DnsApplyError, apply_dns
from harness.censor.plan import CensorPlan, UserspaceStage
from harness.netns.host import LabHost

ROOT_HANDLE = "1:"
IPTABLES_TABLE = "mangle"
IPTABLES_CHAIN = "CALLWALL"
IPTABLES_HOOK_CHAIN = "FORWARD"
STAGE_WHAT = "censor stage"
STAGE_READY_S = 10.0
STAGE_READY_LINE = "stage: bound to NFQUEUE"
# A rule specification goes after `-A CALLWALL`; these would make it do
# something else (another table, chain or command).
IPTABLES_COMMAND_FLAGS = frozenset({
    "-t", "--table", "-A", "--append", "-I", "--insert", "-D", "--delete", "-R", "--replace",
    "-F", "--flush", "-X", "--delete-chain", "-N", "--new-chain", "-P", "--policy", "-Z",
    "--zero", "-E", "--rename-chain", "-L", "--list", "-S", "--list-rules", "-C", "--check",
})


class ApplyError(RuntimeError):
    pass


def apply_plan(censor: LabHost, plan: CensorPlan, previous_tc_devices: Collection[str] = ()
               ) -> None:
    check_iptables_rules(plan.iptables_rules)  # before anything changes
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
            for htb_class in op.classes:  # shape: nft's `meta priority set` picks the class
                rate = f"{round(htb_class.rate_kbit * 1000)}bit"
                ns.tc("replace-class", kind="htb", index=_index(censor, ns, op.dev),
                      handle=htb_class.classid, parent=ROOT_HANDLE, rate=rate, ceil=rate)
    stop_stages(censor)
    for stage in plan.stages:
        start_stage(censor, stage)
    apply_iptables_rules(censor, plan.iptables_rules)
    try:
        apply_dns(censor, plan.dns)
    except DnsApplyError as exc:
        raise ApplyError(f"policy {plan.policy!r}: {exc}") from None


def check_iptables_rules(rules: Sequence[Sequence[str]]) -> None:
    for rule in rules:
        bad = IPTABLES_COMMAND_FLAGS.intersection(rule)
        if bad or not rule:
            raise ApplyError(f"iptables rule {list(rule)!r} must be a bare rule specification "
                             f"(no {', '.join(sorted(bad)) or 'empty rule'})")


def apply_iptables_rules(censor: LabHost, rules: Sequence[Sequence[str]]) -> None:
    """Make the censor's CALLWALL mangle chain hold exactly `rules`."""
    check_iptables_rules(rules)
    exists = _iptables(censor, "-S", IPTABLES_CHAIN, check=False).returncode == 0
    if not rules:
        if exists:
            _iptables(censor, "-D", IPTABLES_HOOK_CHAIN, "-j", IPTABLES_CHAIN, check=False)
            _iptables(censor, "-F", IPTABLES_CHAIN)
            _iptables(censor, "-X", IPTABLES_CHAIN)
        return
    if not exists:
        _iptables(censor, "-N", IPTABLES_CHAIN)
    _iptables(censor, "-F", IPTABLES_CHAIN)
    for rule in rules:
        _iptables(censor, "-A", IPTABLES_CHAIN, *rule)
    jump = ("-j", IPTABLES_CHAIN)
    if _iptables(censor, "-C", IPTABLES_HOOK_CHAIN, *jump, check=False).returncode != 0:
        _iptables(censor, "-A", IPTABLES_HOOK_CHAIN, *jump)


def _iptables(censor: LabHost, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = censor.run(["iptables", "-w", "-t", IPTABLES_TABLE, *args], check=False)
    if check and result.returncode != 0:
        raise ApplyError(f"iptables {' '.join(args)} failed in {censor.name}: "
                         f"{result.stderr.strip()}")
    return result


def stage_argv(stage: UserspaceStage) -> list[str]:
    """The command line of one stage process (argv, never a shell string)."""
    argv = [sys.executable, "-m", "harness.censor.stage", "--queue", str(stage.queue_num),
            "--classifier", stage.classifier,
            "--candidate-mark", hex(stage.candidate_mark),
            "--verdict-mark", hex(stage.verdict_mark)]
    for key, value in stage.params:
        argv += ["--param", f"{key}={value}"]
    return argv


def start_stage(censor: LabHost, stage: UserspaceStage) -> None:
    """Start one stage and wait until it holds its queue."""
    if censor.registry is None:
        raise ApplyError("userspace stages need a lab registry to own their processes")
    log = censor.registry.files / f"stage-{stage.rule_id}-q{stage.queue_num}.log"
    log.write_bytes(b"")
    proc = censor.start(stage_argv(stage), what=STAGE_WHAT, log=log)
    deadline = time.monotonic() + STAGE_READY_S
    while STAGE_READY_LINE not in _text(log):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_stages(censor)
            raise ApplyError(f"userspace stage of rule {stage.rule_id!r} (queue "
                             f"{stage.queue_num}) did not start: {_text(log).strip()[-400:]}")
        time.sleep(0.02)


def stop_stages(censor: LabHost) -> list[int]:
    """Stop the stages a previous plan started (only the recorded ones)."""
    return [] if censor.registry is None else censor.registry.stop(STAGE_WHAT)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


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
