"""`callwall doctor` on this machine (root): real probes in a throwaway
namespace, and the root namespace left exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import doctor
from tests.integration.rootsnapshot import RootSnapshot


def test_doctor_probes_without_touching_the_root_namespace() -> None:
    before = RootSnapshot.take()
    result = subprocess.run([sys.executable, "-m", "harness.cli", "doctor", "--json"],
                            capture_output=True, text=True, timeout=120)
    after = RootSnapshot.take()
    # Mininet shells come and go with other labs running meanwhile; the rest is shared.
    for part in ("links", "ruleset", "qdiscs", "sysctls", "netns"):
        assert getattr(after, part) == getattr(before, part), part
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1), result.stderr
    checks = {c["feature"]: c for c in report["checks"]}
    assert set(doctor.KERNEL_NEEDS) <= set(checks)
    assert checks["veth"]["status"] == "ok"
    link = report["backends"]["link emulation"]
    if checks["sch_netem"]["status"] == "ok":
        assert link.startswith("netem")
    else:  # this machine: no sch_netem, so the userspace daemon carries the links
        assert checks["sch_netem"]["required"] is False
        assert link.startswith("userspace") or link.startswith("none")


def test_the_throwaway_namespace_is_not_ours_and_goes_away() -> None:
    with doctor.throwaway_namespace() as host:
        pid = host.pid
        assert host.run(["readlink", "/proc/self/ns/net"]).stdout.strip() != \
            subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True,
                           text=True).stdout.strip()
        links = host.run(["ip", "-o", "link"]).stdout.splitlines()
        assert len(links) == 1 and ": lo:" in links[0]  # a fresh, empty namespace
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
