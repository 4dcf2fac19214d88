"""What a run ran on: kernel, tool and library versions, the backends in use
and the lab capabilities. Stored in results.json so reports and run
comparisons can say what changed besides the code."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
from typing import Any

from harness.netns.capabilities import REQUIRED_BINARIES, missing_lab_capabilities

PACKAGES = ("callwall", "aiortc", "aioice", "av", "pyroute2", "PyYAML", "cryptography")
TOOLS = {"nft": ["nft", "--version"], "turnserver": ["turnserver", "--version"],
         "iproute2": ["ip", "-V"]}
BACKENDS = {"lab": "mininet (namespaces + veth, no controller)",
            "censor": "nftables (forward hook of the censor host)",
            "link impairment": "none configured"}


def describe_environment() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {**_package_versions(), **_tool_versions(), "mininet": _mininet_version()},
        "backends": dict(BACKENDS),
        "capabilities": _capabilities(),
    }


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _tool_versions() -> dict[str, str]:
    versions = {}
    for name, argv in TOOLS.items():
        if shutil.which(argv[0]) is None:
            versions[name] = "missing"
            continue
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        versions[name] = text[0] if text else "unknown"
    return versions


def _mininet_version() -> str:
    try:
        from mininet.net import VERSION
    except ImportError:
        return "missing"
    return str(VERSION)


def _capabilities() -> list[dict[str, str]]:
    missing = missing_lab_capabilities()
    rows = [{"name": "root", "status": "missing" if any(m.startswith("root") for m in missing)
             else "ok", "detail": "network namespaces, nftables"}]
    for binary, package in REQUIRED_BINARIES.items():
        found = shutil.which(binary)
        rows.append({"name": binary, "status": "ok" if found else "missing",
                     "detail": found or f"install Debian package {package}"})
    return rows
