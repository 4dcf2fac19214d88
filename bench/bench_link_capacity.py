"""Link capacity: packets per second through callwall-impaird (the userspace
impairment stage, NFQUEUE) with <0.1% loss, against plain kernel forwarding.

The lab is ru-to-abroad: iperf3 sends UDP from the caller to the censor, so
every packet is forwarded by the CGNAT; the NFQUEUE rule sits on the CGNAT's
egress towards the censor and the daemon holds each packet 1 ms. Packet sizes
are IP lengths (64 B = 36 B of UDP payload). The highest offered rate with
<0.1% loss is found by a short bisection, each trial a few seconds of iperf3;
when even the sender's top speed loses nothing, that speed is the figure
(sender-limited, as the kernel baseline usually is here).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.run import BenchSkip, Figure
from harness import paths
from harness.link.impaird_binary import ImpairdMissing, impaird_path, nfqueue_rule
from harness.netns.capabilities import missing_lab_capabilities
from harness.netns.host import LabHost
from harness.netns.process import wait_listening
from harness.testbed import Lab

TOPOLOGY = "ru-to-abroad"
SENDER, FORWARDER, RECEIVER = "caller", "cgnat", "censor"
RECEIVER_IP = "198.18.0.1"
FORWARDER_EGRESS = "eth1"  # cgnat's link towards the censor
QUEUE = 4242
IPERF_PORT = 5201
HELD_US = 1000
IP_UDP_HEADERS = 28
SIZES = (64, 1200)
MAX_LOSS = 0.001
CEILING_PPS = 400_000
TRIAL_SECONDS = 2
SOCKET_BUFFER = "4M"  # iperf3 -w: the receiver, not the path, must not be what loses
BISECTION_STEPS = 6
# Issue 4, measured on this machine when idle: a minimal Python NFQUEUE delay loop
# carried 39k pps without loss while kernel forwarding carried ~150k pps (64 B).
PYTHON_PROTOTYPE_PPS = 39_000
PROTOTYPE_KERNEL_PPS = 150_000
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Trial:
    offered_pps: float
    sent_pps: float
    received_pps: float
    loss: float

    @property
    def clean(self) -> bool:
        return self.loss < MAX_LOSS


def iperf_trial(sender: LabHost, size: int, pps: float) -> Trial:
    payload = size - IP_UDP_HEADERS
    bits = int(pps * payload * 8)
    result = sender.run(["iperf3", "-c", RECEIVER_IP, "-u", "-l", str(payload), "-b", str(bits),
                         "-t", str(TRIAL_SECONDS), "-w", SOCKET_BUFFER, "-J"],
                        timeout=TRIAL_SECONDS + 30,
                        check=False)
    report = json.loads(result.stdout)
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    summary = report["end"]["sum"]
    packets, lost, seconds = summary["packets"], summary["lost_packets"], summary["seconds"]
    return Trial(pps, packets / seconds, (packets - lost) / seconds,
                 lost / packets if packets else 1.0)


def highest_clean_rate(sender: LabHost, size: int) -> Trial:
    """The best clean trial: the sender's top speed if that is clean, else a
    bisection between nothing and what the sender managed."""
    top = iperf_trial(sender, size, CEILING_PPS)
    if top.clean:
        return top
    low, high, best = 0.0, top.sent_pps, Trial(0, 0, 0, 0)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        trial = iperf_trial(sender, size, middle)
        if trial.clean:
            low, best = middle, max(best, trial, key=lambda t: t.received_pps)
        else:
            high = middle
    return best


@dataclass(frozen=True)
class Stage:
    pid: int
    stats: Path

    def cpu_seconds(self) -> float:
        """User plus system time the daemon has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def userspace_stage(forwarder: LabHost, work: Path) -> Iterator[Stage]:
    """The daemon on the forwarder's egress."""
    config, stats, log = work / "impaird.conf", work / "stats.json", work / "impaird.log"
    config.write_text(f"queue={QUEUE}\ndelay_us={HELD_US}\nlimit_packets=100000\n")
    added = forwarder.run(["iptables", *nfqueue_rule(FORWARDER_EGRESS, QUEUE)], check=False)
    if added.returncode != 0:
        raise BenchSkip(f"needs the iptables NFQUEUE target and mark match: "
                        f"{added.stderr.strip()}")
    process = forwarder.start([str(impaird_path()), "--config", str(config), "--stats",
                               str(stats)], what="callwall-impaird (bench)", log=log)
    try:
        deadline = time.monotonic() + 5
        while "bound" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"callwall-impaird did not start: {log.read_text()}")
            time.sleep(0.05)
        yield Stage(process.pid, stats)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        forwarder.run(["iptables", *nfqueue_rule(FORWARDER_EGRESS, QUEUE, "-D")], check=False)


def check_capabilities() -> None:
    missing = missing_lab_capabilities()
    if missing:
        raise BenchSkip("needs " + "; ".join(missing))
    for binary in ("iperf3", "iptables"):
        if shutil.which(binary) is None:
            raise BenchSkip(f"needs {binary}")
    try:
        impaird_path()
    except ImpairdMissing as exc:
        raise BenchSkip(str(exc)) from None


def measure(lab: Lab, work: Path) -> list[Figure]:
    sender, forwarder, receiver = (lab.host(n) for n in (SENDER, FORWARDER, RECEIVER))
    server = receiver.start(["iperf3", "-s", "-B", RECEIVER_IP], what="iperf3 server (bench)",
                            log=work / "iperf3.log")
    try:
        if wait_listening(server.pid, [("tcp", IPERF_PORT)], timeout_s=10):
            raise RuntimeError(f"iperf3 server did not listen: {(work / 'iperf3.log').read_text()}")
        kernel = {size: highest_clean_rate(sender, size) for size in SIZES}
        with userspace_stage(forwarder, work) as stage:
            userspace = {size: highest_clean_rate(sender, size) for size in SIZES}
            cpu_seconds = stage.cpu_seconds()
    finally:
        server.terminate()
        server.wait(timeout=10)
    counters = json.loads(stage.stats.read_text())
    cpu_per_packet_us = 1e6 * cpu_seconds / max(counters["received"], 1)
    figures = [Figure("Python NFQUEUE prototype, no loss (issue 4, idle machine: the bar)",
                      PYTHON_PROTOTYPE_PPS, "pps")]
    for size in SIZES:
        figures += size_figures(size, kernel[size], userspace[size])
    figures += [
        Figure("userspace: daemon CPU time per packet (user+sys, all trials)",
               cpu_per_packet_us, "us"),
        Figure("userspace: one-core ceiling implied by that CPU time (estimate)",
               1e6 / cpu_per_packet_us, "pps"),
        Figure("userspace: netlink ENOBUFS overruns (all trials)", counters["enobufs"], "events"),
    ]
    return figures


def size_figures(size: int, kernel: Trial, userspace: Trial) -> list[Figure]:
    """Rates are marked sender-limited when iperf3's top speed lost nothing:
    then they are lower bounds on what the path could carry."""
    def label(trial: Trial) -> str:
        return " (sender-limited)" if trial.offered_pps == CEILING_PPS else ""
    ratio = userspace.received_pps / kernel.received_pps
    prototype_ratio = PYTHON_PROTOTYPE_PPS / PROTOTYPE_KERNEL_PPS
    return [
        Figure(f"kernel forwarding, {size} B, <0.1% loss{label(kernel)}",
               kernel.received_pps, "pps"),
        Figure(f"userspace stage (1 ms hold), {size} B, <0.1% loss{label(userspace)}",
               userspace.received_pps, "pps", f">{PYTHON_PROTOTYPE_PPS} (prototype)",
               userspace.received_pps > PYTHON_PROTOTYPE_PPS),
        Figure(f"userspace / kernel forwarding, {size} B", ratio, "ratio",
               f">={TARGET_RATIO}; prototype {prototype_ratio:.2f}", ratio >= TARGET_RATIO),
    ]


def run() -> list[Figure]:
    check_capabilities()
    with tempfile.TemporaryDirectory(prefix="callwall-bench-link-") as tmp:
        with Lab.create(paths.topology_path(TOPOLOGY)) as lab:
            lab.up()
            return measure(lab, Path(tmp))
