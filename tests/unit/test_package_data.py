"""A wheel (a non-editable install) carries everything the harness reads
under harness.paths.HOME at run time: setup.py's copy step, run into a
temporary build folder, must produce every such folder and file with the
checkout's contents. What "read under HOME" means is taken from the code:
harness.paths' module-level paths, and every `HOME / "..."` in harness/."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from harness import paths

ROOT = paths.checkout_root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="needs a checkout (setup.py)")

# `HOME / "a" / "b"` or `(paths.checkout_root() or paths.HOME) / "a" / "b"`
HOME_USE = re.compile(r"HOME\)?((?:\s*/\s*\"[^\"]+\")+)")


def _setup_module() -> ModuleType:
    assert ROOT is not None
    spec = importlib.util.spec_from_file_location("callwall_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() runs only as __main__
    return module


def runtime_paths() -> set[str]:
    """Every path below HOME the harness reads, relative to HOME."""
    assert ROOT is not None
    found = {str(value.relative_to(paths.HOME)) for name, value in vars(paths).items()
             if name.isupper() and isinstance(value, Path) and value != paths.HOME
             and value.is_relative_to(paths.HOME) and name != "RESULTS"}
    for source in (ROOT / "harness").rglob("*.py"):
        for match in HOME_USE.finditer(source.read_text()):
            found.add("/".join(re.findall(r"\"([^\"]+)\"", match.group(1))))
    return found


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_scan_finds_what_the_harness_is_known_to_read() -> None:
    found = runtime_paths()
    assert {"policies", "topologies", "endpoints", "scenarios/demos", "docs/sources.md",
            "docker/build-base.sh", "topologies/presets/link-presets.yaml"} <= found, found


def test_the_wheel_data_covers_every_runtime_path(tmp_path: Path) -> None:
    assert ROOT is not None
    setup = _setup_module()
    setup.copy_shipped(tmp_path)
    data = tmp_path / setup.DATA
    assert setup.DATA == Path("harness", paths.PACKAGE_DATA)
    for relative in sorted(runtime_paths()):
        source, shipped = paths.HOME / relative, data / relative
        assert shipped.exists(), f"a wheel lacks {relative} (add it to setup.py)"
        if source.is_dir():
            wanted = _files(source)
            if relative not in setup.SHIPPED_WHOLE:
                wanted = {f for f in wanted if f.endswith(".yaml")}
            assert _files(shipped) >= wanted, f"{relative}: missing {wanted - _files(shipped)}"
    # the descriptors' programs, and the base builder, stay runnable
    assert (data / "docker" / "build-base.sh").stat().st_mode & 0o111
    assert (data / "endpoints" / "baresip" / "Dockerfile").is_file()
