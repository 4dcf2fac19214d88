"""What a run ran on: the code's commit, kernel, tool and library versions,
the backends in use and the lab capabilities. Stored in results.json so reports
and run comparisons can say what changed, in the code and besides it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness import __version__
from harness.netns.capabilities import REQUIRED_BINARIES, missing_lab_capabilities

PACKAGES = ("callwall", "aiortc", "aioice", "av", "pyroute2", "PyYAML", "cryptography")
TOOLS = {"nft": ["nft", "--version"], "turnserver": ["turnserver", "--version"],
         "iproute2": ["ip", "-V"]}
BACKENDS = {"lab": "mininet (namespaces + veth, no controller)",
            "censor": "nftables (forward hook of the censor host)"}
# The tree harness/ was imported from: a checkout (with .git) or site-packages.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_S = 10.0


def describe_environment(link_backend: str | None = None) -> dict[str, Any]:
    """`link_backend` is the backend the run's labs impaired links with
    (RunState.link_backend), None when no link was impaired."""
    backends = {**BACKENDS, "link impairment": link_backend or "none (no link impaired)"}
    return {
        "commit": source_commit(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {**_package_versions(), **_tool_versions(), "mininet": _mininet_version()},
        "backends": backends,
        "capabilities": _capabilities(),
    }


def source_commit(root: Path = SOURCE_ROOT) -> str:
    """`git describe --always --dirty` of the checkout harness/ runs from; the
    package version where there is none (an installed wheel, a copy without
    .git such as a docker build context, no git program)."""
    if not (root / ".git").exists():  # only root's own repository, never an enclosing one
        return __version__
    # safe.directory: under sudo the checkout belongs to another user, and git
    # would refuse it; the code being run comes from that checkout anyway.
    # GIT_OPTIONAL_LOCKS=0: --dirty must not rewrite the index as root.
    argv = ["git", "-c", f"safe.directory={root}", "-C", str(root),
            "describe", "--always", "--dirty"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                             env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return __version__
    described = out.stdout.strip()
    return described if out.returncode == 0 and described else __version__


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
