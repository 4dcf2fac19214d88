"""The userspace backend: `callwall-impaird`, an NFQUEUE daemon, holds, drops
and duplicates the packets leaving one interface of one lab host.

Per link direction it owns exactly two things, both inside the host's
namespace: one iptables rule

    iptables -t mangle -A POSTROUTING -o IFACE -m mark ! --mark DUP_MARK
             -j NFQUEUE --queue-num Q --queue-bypass

(DUP_MARK keeps the daemon's own duplicates from queueing again; with
--queue-bypass, packets pass unimpaired rather than vanish if the daemon is
gone) and one daemon process, started with `LabHost.start` so the run's
registry records it and teardown stops it. Parameters change without a gap:
the config file is rewritten and the daemon reloads it on SIGHUP.

The daemon also measures itself: `lateness(target)` says how late its
verdicts left against the departures it scheduled (p50/p99/max, packets
beyond LATE_TOLERANCE_US), how it was scheduled, and how much CPU time the
hypervisor stole meanwhile (harness.link.backend.LinkLateness).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from harness.link.backend import LinkBackend, LinkBackendError, LinkLateness, LinkTarget
from harness.link.impaird_binary import DUP_MARK, impaird_path
from harness.netns.host import LabHost
from harness.netns.registry import OwnedProcess, Registry, process_start_ticks, terminate
from harness.spec.impairment import Impairment

WHAT_PREFIX = "link impaird"
READY_TIMEOUT_S = 5.0
STATS_TIMEOUT_S = 2.0
NFQUEUE_PROC = "/proc/net/netfilter/nfnetlink_queue"
OWNER_GLOB = "impaird-*.owner.json"
# A packet whose verdict leaves later than this after its scheduled departure
# counts as late (the daemon's `over_tolerance`): the median error the link
# fidelity calibration allows (0.5 ms). LinkLateness.missed(tolerance_us=...)
# judges any other tolerance from the histogram.
LATE_TOLERANCE_US = 500


def render_config(impairment: Impairment, queue: int) -> str:
    """The daemon's config file for `impairment` on NFQUEUE `queue` (pure)."""
    lines = [
        "# written by callwall (harness/link/userspace.py); SIGHUP reloads it",
        f"queue={queue}",
        f"delay_us={round(impairment.delay_ms * 1000)}",
        f"jitter_us={round(impairment.jitter_ms * 1000)}",
        f"jitter_dist={impairment.distribution}",
        f"keep_order={int(impairment.keep_order)}",
        *_loss_lines(impairment),
        f"rate_bps={round(impairment.rate_kbit * 1000)}",
        f"limit_packets={impairment.limit_packets}",
        f"duplicate_p={impairment.duplicate_pct / 100:.9g}",
        f"reorder_p={impairment.reorder_pct / 100:.9g}",
        f"seed={impairment.seed}",
    ]
    return "\n".join(lines) + "\n"


def _loss_lines(impairment: Impairment) -> list[str]:
    g = impairment.gemodel
    if g is not None:
        return ["loss_model=gilbert-elliott", f"loss_p={g.p_pct / 100:.9g}",
                f"ge_r={g.r_pct / 100:.9g}", f"ge_loss_good={g.good_loss_pct / 100:.9g}",
                f"ge_loss_bad={g.bad_loss_pct / 100:.9g}"]
    if impairment.loss_pct:
        return ["loss_model=bernoulli", f"loss_p={impairment.loss_pct / 100:.9g}"]
    return ["loss_model=none", "loss_p=0"]


def nfqueue_rule(interface: str, queue: int) -> list[str]:
    """The rule specification (after `-A POSTROUTING`/`-D POSTROUTING`)."""
    return ["-o", interface, "-m", "mark", "!", "--mark", f"{DUP_MARK:#x}", "-j", "NFQUEUE",
            "--queue-num", str(queue), "--queue-bypass"]


def _iptables(action: str, target: LinkTarget) -> list[str]:
    return ["iptables", "-w", "-t", "mangle", action, "POSTROUTING",
            *nfqueue_rule(target.interface, target.queue)]


def recorded_daemons(run_dir: Path) -> list[OwnedProcess]:
    """The daemons a run's owner files name. Besides the run's state (which two
    processes, e.g. the lab's owner and `callwall link set`, may both rewrite),
    each daemon is recorded in a file of its own, so none is ever lost track of."""
    owned = []
    for path in sorted(run_dir.glob(OWNER_GLOB)):
        try:
            owned.append(OwnedProcess(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being written or removed right now
    return owned


def bound_queues(host: LabHost) -> set[int]:
    """The NFQUEUE numbers some process in `host` has bound."""
    result = host.run(["cat", NFQUEUE_PROC], check=False)
    return {int(line.split()[0]) for line in result.stdout.splitlines() if line.split()}


class UserspaceBackend(LinkBackend):
    name = "userspace"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @staticmethod
    def what(target: LinkTarget) -> str:
        return f"{WHAT_PREFIX} {target.label}"

    def files(self, target: LinkTarget) -> tuple[Path, Path, Path]:
        base = self.registry.files
        stem = self._stem(target)
        return base / f"{stem}.conf", base / f"{stem}.stats.json", base / f"{stem}.log"

    def _owner_file(self, target: LinkTarget) -> Path:
        return self.registry.files / f"{self._stem(target)}.owner.json"

    @staticmethod
    def _stem(target: LinkTarget) -> str:
        return f"impaird-{target.host.name}-{target.interface}"

    def apply(self, target: LinkTarget, impairment: Impairment) -> None:
        config, stats, log = self.files(target)
        _write_atomically(config, render_config(impairment, target.queue))
        if target.queue in bound_queues(target.host):
            raise LinkBackendError(f"{target.label}: NFQUEUE {target.queue} is already bound")
        proc = target.host.start([str(impaird_path()), "--config", str(config), "--stats",
                                  str(stats), "--late-tolerance-us", str(LATE_TOLERANCE_US)],
                                 what=self.what(target), log=log)
        ticks = process_start_ticks(proc.pid)
        if ticks is not None:
            owned = OwnedProcess(proc.pid, ticks, target.host.name, self.what(target))
            _write_atomically(self._owner_file(target), json.dumps(owned.__dict__))
        self._await_bound(target, log)
        target.host.run(_iptables("-A", target))

    def update(self, target: LinkTarget, impairment: Impairment) -> None:
        config, _, _ = self.files(target)
        _write_atomically(config, render_config(impairment, target.queue))
        self._signal(target, signal.SIGHUP)

    def clear(self, target: LinkTarget) -> None:
        """The rule first (packets then pass unimpaired), then the daemon."""
        while target.host.run(_iptables("-C", target), check=False).returncode == 0:
            target.host.run(_iptables("-D", target))
        for owned in self._running(target):
            terminate(owned)
        self.registry.stop(self.what(target))  # and forget it in the run's state
        self._owner_file(target).unlink(missing_ok=True)

    def is_applied(self, target: LinkTarget) -> bool:
        return bool(self._running(target))

    def _running(self, target: LinkTarget) -> list[OwnedProcess]:
        """This target's live daemon, by its owner file or the run's state."""
        found = {(p.pid, p.start_ticks): p for p in self.registry.running(self.what(target))}
        owner = self._owner_file(target)
        for owned in recorded_daemons(owner.parent):
            if owned.what == self.what(target) and owned.alive():
                found[(owned.pid, owned.start_ticks)] = owned
        return list(found.values())

    def stats(self, target: LinkTarget) -> dict[str, int]:
        """The daemon's counters (received, passed, dropped_loss, ...), fresh."""
        return {key: value for key, value in self.stats_document(target).items()
                if isinstance(value, int) and not isinstance(value, bool)}

    def lateness(self, target: LinkTarget) -> LinkLateness:
        """How late the daemon's own verdicts were since it started, fresh
        (take two and use `since` for a window such as one call)."""
        return parse_lateness(self.stats_document(target))

    def stats_document(self, target: LinkTarget) -> dict[str, Any]:
        """Everything the daemon writes on SIGUSR1 (see impaird/README.md), fresh."""
        _, stats, _ = self.files(target)
        before = stats.stat().st_mtime_ns if stats.exists() else 0
        self._signal(target, signal.SIGUSR1)
        deadline = time.monotonic() + STATS_TIMEOUT_S
        while time.monotonic() < deadline:
            if stats.exists() and stats.stat().st_mtime_ns != before:
                try:
                    document: dict[str, Any] = json.loads(stats.read_text())
                    return document
                except ValueError:
                    pass  # caught mid-write
            time.sleep(0.02)
        raise LinkBackendError(f"{target.label}: the daemon wrote no stats to {stats}")

    def _signal(self, target: LinkTarget, sig: int) -> None:
        running = self._running(target)
        if not running:
            raise LinkBackendError(f"{target.label}: no impairment daemon is running")
        for owned in running:
            os.kill(owned.pid, sig)

    def _await_bound(self, target: LinkTarget, log: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if target.queue in bound_queues(target.host):
                return
            if not self._running(target):
                break
            time.sleep(0.02)
        for owned in self._running(target):
            terminate(owned)
        self.registry.stop(self.what(target))
        self._owner_file(target).unlink(missing_ok=True)
        tail = log.read_text(errors="replace")[-500:].strip() if log.exists() else ""
        raise LinkBackendError(f"{target.label}: callwall-impaird did not bind NFQUEUE "
                               f"{target.queue}: {tail or 'no output'}")


def parse_lateness(document: dict[str, Any]) -> LinkLateness:
    """LinkLateness from the daemon's stats document (pure). A daemon too old
    to measure itself gives ValueError."""
    try:
        late = document["lateness"]
        scheduling = document.get("scheduling", {})
        machine = document.get("machine", {})
        steal = int(machine.get("steal_ms", -1))
        return LinkLateness(
            packets=int(late["count"]), p50_us=int(late["p50_us"]), p99_us=int(late["p99_us"]),
            p999_us=int(late["p999_us"]), max_us=int(late["max_us"]),
            tolerance_us=int(late["tolerance_us"]), over_tolerance=int(late["over_tolerance"]),
            buckets=tuple((int(low), int(count)) for low, count in late.get("buckets", [])),
            realtime=scheduling.get("policy") == "fifo",
            realtime_refused=str(scheduling.get("realtime_refused", "")),
            wakers=int(scheduling.get("wakers", 1)),
            memory_locked=bool(scheduling.get("memory_locked", False)),
            elapsed_ms=int(machine.get("elapsed_ms", 0)), cpus=int(machine.get("cpus", 0)),
            steal_ms=steal if steal >= 0 else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"no lateness in the daemon's stats ({exc!r}): rebuild "
                         "callwall-impaird (make install)") from exc


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
