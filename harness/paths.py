"""Where the project's specs and results live, and how names resolve to files.

The one place that finds the shipped specs, the policies/ and topologies/
folders. In order:

- `CALLWALL_HOME`, when set: a folder holding policies/ and topologies/;
- the checkout harness/ was imported from (a source tree, an editable install);
- the copies an installed wheel carries inside the package, harness/_data/
  (setup.py puts them there), read through importlib.resources.

Results go to `CALLWALL_RESULTS` when set, else results/ beside the specs of a
checkout or of `CALLWALL_HOME`, else results/ in the working directory (never
into an installed package).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

ENV_HOME = "CALLWALL_HOME"
ENV_RESULTS = "CALLWALL_RESULTS"
SPEC_FOLDERS = ("policies", "topologies")
PACKAGE_DATA = "_data"  # harness/_data/ in a wheel (setup.py)
DEFAULT_TOPOLOGY = "ru-to-abroad"


def checkout_root() -> Path | None:
    """The source tree harness/ was imported from, if it holds the spec folders."""
    root = Path(__file__).resolve().parent.parent
    return root if all((root / folder).is_dir() for folder in SPEC_FOLDERS) else None


def shipped_specs() -> Path:
    """The spec folders a wheel installs inside the package. Wheels install
    unpacked, so this is a real directory."""
    return Path(str(importlib.resources.files(__package__ or "harness") / PACKAGE_DATA))


def _home() -> Path:
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME])
    return checkout_root() or shipped_specs()


def _results(home: Path) -> Path:
    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS])
    if os.environ.get(ENV_HOME) or home == checkout_root():
        return home / "results"
    return Path.cwd() / "results"


HOME = _home()
TOPOLOGIES = HOME / "topologies"
POLICIES = HOME / "policies"
LINK_PRESETS = TOPOLOGIES / "presets" / "link-presets.yaml"
# Endpoint descriptors: a user's own call clients and tunnels (harness.spec.descriptor).
ENDPOINTS = HOME / "endpoints"
RESULTS = _results(HOME)


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


def all_topologies() -> list[Path]:
    return sorted(TOPOLOGIES.glob("*.yaml"))
