"""Where a judged call's time goes: policy load, health check, tunnel, setup, media, teardown.

Runs a small, fixed sample of matrix cells one after another in one lab
(serially: the figures are one call's costs, not a parallel run's) and
prints, per call and summed, the steps that harness.session.call_timing
records. The ratio that matters is the last one: wall time against the sum
of the media windows, the overhead a faster matrix must drive down."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.run import BenchSkip, Figure
from harness import paths
from harness.calls import CallSettings
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab

# (policy, profile, strategy): a clean call, a tunnel, two kinds of failure
# and an app profile, so every step shows up at least once.
SAMPLE = (
    ("baseline", "webrtc", "direct"),
    ("baseline", "webrtc", "turn-tls-443"),
    ("turn-relay-block", "webrtc", "turn-udp"),
    ("ru-2025-08-calls", "whatsapp-like", "direct"),
    ("ru-2025-08-calls", "telegram-like", "direct"),
    ("baseline", "webrtc", "wireguard"),
)
STEPS = ("policy_load", "health_check", "counters", "capture", "tunnel_up", "setup",
         "failure_wait", "media", "teardown", "scoring")
MEDIA_S = 6.0


def run() -> list[Figure]:
    if os.geteuid() != 0:
        raise BenchSkip("needs root (it builds a lab)")
    figures: list[Figure] = []
    totals = dict.fromkeys(STEPS, 0.0)
    media_sum = 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cw-bench-calls-") as scratch, \
            Lab.create(paths.topology_path(paths.DEFAULT_TOPOLOGY)) as lab:
        lab.up()
        for policy_name, profile, strategy in SAMPLE:
            policy = load_policy(paths.policy_path(policy_name))
            call_dir = Path(scratch) / f"{policy_name}--{profile}--{strategy}"
            record = judged_call(lab, policy, strategy, call_dir,
                                 CallSettings(media_s=MEDIA_S, capture_pcap=True),
                                 profile=profile)
            timing = record.timing_s
            cell = f"{policy_name} {profile} {strategy} ({record.outcome})"
            shown = ", ".join(f"{k} {v:.2f}" for k, v in timing.items()
                              if k in STEPS and v)
            print(f"    {cell}: {shown}; total {timing.get('total') or 0:.2f} s", flush=True)
            for step in STEPS:
                totals[step] += timing.get(step) or 0.0
            media_sum += timing.get("media") or 0.0
    wall = time.monotonic() - started
    calls = len(SAMPLE)
    for step in STEPS:
        figures.append(Figure(f"{step}, mean per call", totals[step] / calls, "s"))
    figures.append(Figure("wall time, lab build and teardown included", wall, "s"))
    figures.append(Figure("sum of media windows", media_sum, "s"))
    if media_sum > 0:
        figures.append(Figure("wall time / sum of media windows (1 lab)", wall / media_sum,
                              "x", target="<= 1.5 per lab (issue 16)", met=wall / media_sum <= 1.5))
    return figures
