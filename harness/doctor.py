"""`callwall doctor`: what this machine's kernel and userland offer callwall,
which backend each part will use, and what to install for what is missing.

Kernel features are probed by using them, never guessed from versions: inside
a throwaway network namespace (an `unshare --net` process of our own, which
takes the namespace with it when it ends), doctor creates a veth pair and
tries a netem, an HTB and a TBF qdisc, nftables rules with each feature the
censor compiles to, an NFQUEUE rule, a TUN device, a bridge and a kernel
WireGuard link. The root namespace's firewall and qdiscs are never touched.

The exit status is non-zero only when something REQUIRED is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.link.impaird_binary import BINARY_NAME, impaird_path
from harness.link.selection import PROBE_VETH, Probe, probe_netem, probe_nfqueue, probe_veth
from harness.netns.host import LabHost
from harness.netns.mininet_backend import MININET_IMPORT_ERROR
from harness.tunnels import TOOLS

NAMESPACE_READY_S = 5.0
NFT_TABLE = "table inet cwdoctor {\n%s\n}\n"
FORWARD_CHAIN = "chain c {\n type filter hook forward priority 0; policy accept;\n%s\n}"
NFT_FEATURES: dict[str, str] = {
    "nft dynamic set + per-element limit": (
        "set s { type ipv4_addr; flags dynamic; size 16; }\n"
        + FORWARD_CHAIN % "update @s { ip saddr limit rate over 10/second } drop"),
    "nft @th payload match": FORWARD_CHAIN % "udp dport 9 @th,96,32 0x2112a442 drop",
    "nft ct original packets": FORWARD_CHAIN % "ct original packets < 4 counter",
    "nft numgen random": FORWARD_CHAIN % "numgen random mod 100 < 5 counter",
    "nft interval set": ("set s { type ipv4_addr; flags interval; "
                         "elements = { 198.18.0.0/15 }; }\n"
                         + FORWARD_CHAIN % "ip daddr @s counter"),
}


@dataclass(frozen=True)
class Check:
    """One feature: found or not, whether callwall cannot do without it, what it
    is used for (and by which backend), and what to install when it is missing."""

    feature: str
    ok: bool
    required: bool
    used_for: str
    install: str = ""
    detail: str = ""

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "MISSING" if self.required else "missing"


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    backends: dict[str, str]

    @property
    def missing_required(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]

    def to_dict(self) -> dict[str, object]:
        return {"checks": [asdict(c) | {"status": c.status} for c in self.checks],
                "backends": self.backends,
                "ok": not self.missing_required}


# ---------------------------------------------------------------- the namespace

@contextmanager
def throwaway_namespace() -> Iterator[LabHost]:
    """A network namespace held by one `sleep` of ours; it goes when the process does."""
    proc = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _await_own_namespace(proc)
        yield LabHost("doctor", "probe", proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _await_own_namespace(proc: subprocess.Popen[bytes]) -> None:
    """Until `unshare` has moved into its new namespace (before that, entering its
    namespace would mean entering ours: the root namespace)."""
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + NAMESPACE_READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"unshare --net failed: {error.strip() or proc.returncode}")
        try:
            theirs = os.readlink(f"/proc/{proc.pid}/ns/net")
            comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
        except OSError:
            theirs, comm = ours, ""
        if theirs != ours and comm == "sleep":
            return
        time.sleep(0.01)
    raise RuntimeError("unshare --net did not enter a new namespace in time")


# ---------------------------------------------------------------- kernel probes

def _ran(host: LabHost, argv: list[str], text: str | None = None) -> Probe:
    try:
        result = host.run(argv, input_text=text, check=False, timeout=10.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, str(exc))
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return Probe(False, message[-1] if message else f"exit {result.returncode}")
    return Probe(True)


def _on_probe_veth(host: LabHost, argv: list[str]) -> Probe:
    try:
        with probe_veth(host):
            return _ran(host, argv)
    except Exception as exc:  # noqa: BLE001 - pyroute2 raises many kinds; report, not crash
        return Probe(False, f"cannot create a veth pair: {exc}")


def _nft(host: LabHost, body: str) -> Probe:
    probe = _ran(host, ["nft", "-f", "-"], NFT_TABLE % body)
    _ran(host, ["nft", "delete", "table", "inet", "cwdoctor"])
    return probe


def _device(host: LabHost, create: list[str], name: str) -> Probe:
    probe = _ran(host, create)
    if probe.usable:
        _ran(host, ["ip", "link", "del", name])
    return probe


def kernel_probes(host: LabHost) -> dict[str, Probe]:
    dev = PROBE_VETH[0]
    probes: dict[str, Probe] = {
        "veth": _on_probe_veth(host, ["ip", "link", "show", dev]),
        "sch_netem": _safe(lambda: probe_netem(host)),
        "sch_htb": _on_probe_veth(host, ["tc", "qdisc", "add", "dev", dev, "root",
                                         "handle", "1:", "htb"]),
        "sch_tbf": _on_probe_veth(host, ["tc", "qdisc", "add", "dev", dev, "root", "tbf",
                                         "rate", "1mbit", "burst", "32kbit", "latency",
                                         "50ms"]),
    }
    for feature, body in NFT_FEATURES.items():
        probes[feature] = _nft(host, body)
    probes["iptables NFQUEUE target"] = _safe(lambda: probe_nfqueue(host))
    probes["TUN device"] = _device(host, ["ip", "tuntap", "add", "dev", "cwdoctun",
                                          "mode", "tun"], "cwdoctun")
    probes["Linux bridge"] = _device(host, ["ip", "link", "add", "cwdocbr", "type",
                                            "bridge"], "cwdocbr")
    probes["kernel WireGuard"] = _device(host, ["ip", "link", "add", "cwdocwg", "type",
                                                "wireguard"], "cwdocwg")
    return probes


def _safe(probe: Callable[[], Probe]) -> Probe:
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - a probe that crashes is a missing feature
        return Probe(False, str(exc))


# ---------------------------------------------------------------- userland

BINARIES: tuple[tuple[str, str, bool, str], ...] = (
    # binary, Debian package, required, used for
    ("nft", "nftables", True, "the censor's rules, the NATs"),
    ("iptables", "iptables", True, "NFQUEUE rules for userspace stages and links"),
    ("tc", "iproute2", True, "qdiscs (netem's gemodel and distributions)"),
    ("nsenter", "util-linux", True, "running programs inside lab hosts"),
    ("unshare", "util-linux", True, "doctor's throwaway namespace"),
    ("mnexec", "mininet", True, "lab hosts (Mininet)"),
    ("turnserver", "coturn", True, "TURN relay and STUN server"),
    ("dnsmasq", "dnsmasq-base", True, "the subscribers' resolver (the national DNS)"),
    ("docker", "docker.io", False, "container-based apps (optional)"),
    ("chromium", "chromium", False, "the report render test, browser calls"),
    ("iperf3", "iperf3", False, "capacity benchmarks (make bench)"),
    ("tcpdump", "tcpdump", False, "per-call pcaps"),
)


def _tunnel_binaries() -> list[tuple[str, str, bool, str]]:
    """The tunnels' programs (harness.tunnels.TOOLS): optional; the matrix skips
    the cells whose tools are missing, and says so."""
    users: dict[tuple[str, str], list[str]] = {}
    for strategy, tools in TOOLS.items():
        for tool in tools:
            users.setdefault(tool, []).append(strategy)
    return [(binary, package, False, "tunnels: " + ", ".join(strategies))
            for (binary, package), strategies in users.items()]


def userland_checks(link_needs_impaird: bool) -> list[Check]:
    checks = [Check("mininet (python)", MININET_IMPORT_ERROR is None, True,
                    "lab hosts", "apt install mininet (venv with system site-packages)",
                    str(MININET_IMPORT_ERROR or ""))]
    for binary, package, required, used_for in (*BINARIES, *_tunnel_binaries()):
        found = shutil.which(binary)
        checks.append(Check(binary, found is not None, required, used_for,
                            f"apt install {package}", found or "not on PATH"))
    try:
        detail, ok = str(impaird_path()), True
    except FileNotFoundError as exc:
        detail, ok = str(exc), False
    checks.append(Check(BINARY_NAME, ok, link_needs_impaird,
                        "userspace link backend" + (" (needed: no netem)"
                                                    if link_needs_impaird else ""),
                        "make install (builds harness/link/impaird/)", detail))
    return checks


# ---------------------------------------------------------------- the report

KERNEL_NEEDS: dict[str, tuple[bool, str, str]] = {
    # feature: (required, used for, what to install)
    "veth": (True, "every lab link", "a kernel with CONFIG_VETH"),
    "sch_netem": (False, "netem link backend", "CONFIG_NET_SCH_NETEM (Ubuntu: "
                  "linux-modules-extra-$(uname -r); RHEL: kernel-modules-extra)"),
    "sch_htb": (True, "censor shaping plans", "CONFIG_NET_SCH_HTB"),
    "sch_tbf": (True, "censor shaping plans", "CONFIG_NET_SCH_TBF"),
    "nft dynamic set + per-element limit": (True, "censor: per-flow policing, flow marking",
                                            "nftables >= 0.9 with CONFIG_NFT_DYNSET"),
    "nft @th payload match": (True, "censor: STUN cookie match", "CONFIG_NFT_PAYLOAD"),
    "nft ct original packets": (True, "censor: first packets of a flow",
                                "CONFIG_NFT_CT, conntrack accounting"),
    "nft numgen random": (False, "random-drop policies", "CONFIG_NFT_NUMGEN"),
    "nft interval set": (True, "censor: address sets", "CONFIG_NFT_SET_RBTREE"),
    "iptables NFQUEUE target": (False, "userspace link backend, censor userspace stages",
                                "CONFIG_NETFILTER_XT_TARGET_NFQUEUE and iptables-nft"),
    "TUN device": (False, "userspace tunnels (wireguard-go, OpenVPN)", "CONFIG_TUN"),
    "Linux bridge": (False, "bridged topologies", "CONFIG_BRIDGE"),
    "kernel WireGuard": (False, "WireGuard tunnels (else wireguard-go over TUN)",
                         "CONFIG_WIREGUARD"),
}


def kernel_checks(probes: dict[str, Probe], link_backend: str) -> list[Check]:
    checks = []
    for feature, probe in probes.items():
        required, used_for, install = KERNEL_NEEDS[feature]
        if feature == "iptables NFQUEUE target" and link_backend == "userspace":
            required = True  # without netem, links depend on it
        checks.append(Check(feature, probe.usable, required, used_for, install,
                            probe.reason))
    return checks


def choose_link_backend(probes: dict[str, Probe], impaird_ok: bool) -> str:
    if probes["sch_netem"].usable:
        return "netem"
    if probes["iptables NFQUEUE target"].usable and impaird_ok:
        return "userspace"
    return "none"


def backends_summary(probes: dict[str, Probe], link_backend: str) -> dict[str, str]:
    wireguard = ("kernel" if probes["kernel WireGuard"].usable
                 else "wireguard-go over TUN" if probes["TUN device"].usable
                 and shutil.which("wireguard-go") else "none")
    return {
        "link emulation": {"netem": "netem (kernel qdisc, via pyroute2 and tc)",
                           "userspace": "userspace (callwall-impaird on NFQUEUE)",
                           "none": "none: neither netem nor NFQUEUE + callwall-impaird"}
        [link_backend],
        "censor classification": "nftables (forward hook)",
        "censor userspace stages": ("NFQUEUE (iptables -j NFQUEUE)"
                                    if probes["iptables NFQUEUE target"].usable else "none"),
        "WireGuard": wireguard,
    }


def diagnose() -> Report:
    if os.geteuid() != 0:
        root = Check("root", False, True, "namespaces, nftables, qdiscs",
                     "run as root (or with sudo)", "kernel features not probed")
        return Report([root, *userland_checks(link_needs_impaird=False)], {})
    with throwaway_namespace() as host:
        probes = kernel_probes(host)
    impaird_ok = any(c.ok for c in userland_checks(False) if c.feature == BINARY_NAME)
    link_backend = choose_link_backend(probes, impaird_ok)
    checks = kernel_checks(probes, "netem" if link_backend == "netem" else "userspace")
    checks += userland_checks(link_needs_impaird=link_backend != "netem")
    return Report(checks, backends_summary(probes, link_backend))


def render(report: Report) -> str:
    width = max(len(c.feature) for c in report.checks)
    used = max(len(c.used_for) for c in report.checks)
    lines = [f"{'feature':<{width}}  {'status':<8} {'used for (backend)':<{used}}  "
             "to install / found"]
    for c in report.checks:
        hint = c.install if not c.ok else c.detail if c.detail.startswith("/") else ""
        if not c.ok and c.detail:
            hint += f"  [{c.detail[:100]}]"
        lines.append(f"{c.feature:<{width}}  {c.status:<8} {c.used_for:<{used}}  {hint}")
    if report.backends:
        lines += ["", "backends this machine will use:"]
        lines += [f"  {part:<24} {choice}" for part, choice in report.backends.items()]
    missing = report.missing_required
    lines.append("")
    lines.append("all required features present" if not missing else
                 "REQUIRED and missing: " + ", ".join(c.feature for c in missing))
    return "\n".join(lines)


def main(as_json: bool = False) -> int:
    report = diagnose()
    print(json.dumps(report.to_dict(), indent=2) if as_json else render(report))
    return 1 if report.missing_required else 0
