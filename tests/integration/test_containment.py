"""No lab traffic ever reaches the root namespace, and a run's secrets go with it."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from harness import paths
from harness.calls import CallSettings
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.testing.diagnosis import why_not_connected

LAB_RANGES = "net 198.18.0.0/15 or net 100.64.0.0/10 or net 192.0.2.0/24"


def _capture(argv_prefix: list[str], pcap: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*argv_prefix, "tcpdump", "-i", "any", "-nn", "-p", "-q",
                             "--immediate-mode", "-w", str(pcap), LAB_RANGES],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let tcpdump open its socket
    return proc


def _packets(proc: subprocess.Popen[bytes], pcap: Path) -> int:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    read = subprocess.run(["tcpdump", "-nn", "-r", str(pcap)], capture_output=True, text=True)
    return len(read.stdout.splitlines())


def test_lab_traffic_never_appears_in_the_root_namespace(run_files: Path) -> None:
    with Lab.create(paths.topology_path("ru-to-abroad")) as lab:
        lab.up()
        root = _capture([], run_files / "root.pcap")
        censor = _capture(lab.host_with_role("censor").argv([]), run_files / "censor.pcap")
        record = judged_call(lab, load_policy(paths.policy_path("baseline")), "turn-udp",
                             run_files / "call", CallSettings(media_s=3))
        assert record.connected, why_not_connected(record, run_files / "call")
        in_censor = _packets(censor, run_files / "censor.pcap")
        in_root = _packets(root, run_files / "root.pcap")
    assert in_censor > 100, "the capture filter must see the call where it does flow"
    assert in_root == 0


def test_lab_hosts_have_no_link_to_the_root_namespace(lab: Lab) -> None:
    for name, host in lab.hosts.items():
        links = host.run(["ip", "-o", "link"]).stdout
        names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
        expected = {"lo"} | {i.name for i in lab.topology.interfaces(name)}
        assert names == expected, name


def test_credentials_and_keys_are_removed_with_the_run() -> None:
    with Lab.create(paths.topology_path("ru-to-abroad")) as lab:
        lab.up()
        assert lab.services is not None
        ca = Path(lab.services.ca_file)
        key = ca.parent / "server.key"
        assert ca.is_file() and key.is_file()
        assert key.stat().st_mode & 0o077 == 0
        password = lab.services.turn_password
        state = (lab.registry.dir / "state.json").read_text()
        assert password in state  # recorded for `callwall up` users, inside the run's dir
    assert not ca.exists() and not key.exists() and not lab.registry.dir.exists()
