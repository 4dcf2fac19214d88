"""One build step pyproject.toml cannot declare: a wheel carries the shipped
specs, the top-level policies/ and topologies/ folders, inside the package as
harness/_data/policies/ and harness/_data/topologies/, where harness.paths
finds them when callwall runs from an installed wheel (and beside them the
other runtime data read under harness.paths.HOME: endpoints/, scenarios/demos/,
docs/sources.md, docker/build-base.sh). The folders stay where
they are in the repository; an editable install reads them there instead.
Everything else about the package is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("policies", "topologies")  # harness/paths.py: SPEC_FOLDERS
# What else the harness reads under harness.paths.HOME at run time: the
# endpoint descriptors (whole folders: their scripts and Dockerfiles), the
# demo scripts, the sources the demo cites, and the base image's builder.
SHIPPED_YAML = ("scenarios/demos",)
SHIPPED_WHOLE = ("endpoints",)
SHIPPED_FILES = ("docs/sources.md", "docker/build-base.sh")
DATA = Path("harness", "_data")  # harness/paths.py: PACKAGE_DATA


def _not_yaml(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if not n.endswith(".yaml") and not Path(folder, n).is_dir()}


def _caches(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith(".pyc")}


def copy_shipped(build_lib: Path) -> None:
    """The checkout's runtime data into `build_lib`/harness/_data/."""
    for folder in (*SHIPPED, *SHIPPED_YAML, *SHIPPED_WHOLE):
        target = build_lib / DATA / folder
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / folder, target,
                        ignore=_caches if folder in SHIPPED_WHOLE else _not_yaml)
    for file in SHIPPED_FILES:
        target = build_lib / DATA / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / file, target)  # keeps build-base.sh executable


class BuildPyWithSpecs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # harness.paths reads the checkout's folders
            return
        copy_shipped(Path(self.build_lib))


if __name__ == "__main__":  # the build backend runs it so; a test imports copy_shipped
    setup(cmdclass={"build_py": BuildPyWithSpecs})
