"""A picture of the root namespace's shared state: labs must leave it as it was."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding",
           "net/ipv6/conf/all/forwarding", "net/netfilter/nf_conntrack_acct")


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        values[name] = path.read_text().strip() if path.exists() else "-"
    return values


def _mininet_shells() -> list[str]:
    shells = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mininet:cw" in text:
            shells.append(text)
    return sorted(shells)


@dataclass(frozen=True)
class RootSnapshot:
    links: str
    ruleset: str
    qdiscs: str
    sysctls: dict[str, str]
    netns: str
    mininet_shells: list[str]

    @classmethod
    def take(cls) -> RootSnapshot:
        names = [line.split(":")[1].strip() for line in _run("ip", "-o", "link").splitlines()]
        qdiscs = re.sub(r"refcnt \d+ ", "", _run("tc", "qdisc", "show"))
        return cls(links="\n".join(sorted(names)), ruleset=_run("nft", "list", "ruleset"),
                   qdiscs=qdiscs, sysctls=_sysctls(),
                   netns=_run("ip", "netns", "list"), mininet_shells=_mininet_shells())
