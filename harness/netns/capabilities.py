"""What the machine must offer to run a lab: checked up front, so that tests skip
with the missing capability named, and commands fail with a useful message."""

from __future__ import annotations

import os
import shutil

from harness.netns.mininet_backend import MININET_IMPORT_ERROR

REQUIRED_BINARIES = {
    "nft": "nftables",
    "nsenter": "util-linux",
    "turnserver": "coturn",
    "dnsmasq": "dnsmasq-base",
    "mnexec": "mininet",
    "sysctl": "procps",
    "ethtool": "ethtool",
}


def missing_lab_capabilities() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces and nftables need it)")
    if MININET_IMPORT_ERROR is not None:
        missing.append(f"the mininet Python package ({MININET_IMPORT_ERROR})")
    for binary, package in REQUIRED_BINARIES.items():
        if shutil.which(binary) is None:
            missing.append(f"{binary} (Debian package {package})")
    return missing
