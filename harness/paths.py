"""Where the project's specs and results live, and how names resolve to files."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("CALLWALL_HOME", Path(__file__).resolve().parent.parent))
TOPOLOGIES = PROJECT_ROOT / "topologies"
POLICIES = PROJECT_ROOT / "policies"
RESULTS = Path(os.environ.get("CALLWALL_RESULTS", PROJECT_ROOT / "results"))
DEFAULT_TOPOLOGY = "ru-to-abroad"


class SpecNotFound(FileNotFoundError):
    pass


def resolve_spec(name_or_path: str, folder: Path) -> Path:
    """A path as given if it exists, else `<folder>/<name>.yaml`."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    candidate = folder / f"{name_or_path}.yaml"
    if "/" not in name_or_path and candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
    raise SpecNotFound(f"{name_or_path}: no such file, and no {folder.name}/{name_or_path}.yaml "
                       f"(known: {known})")


def topology_path(name: str) -> Path:
    return resolve_spec(name, TOPOLOGIES)


def policy_path(name: str) -> Path:
    return resolve_spec(name, POLICIES)


def all_policies() -> list[Path]:
    return sorted(POLICIES.glob("*.yaml"))
