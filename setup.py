"""One build step pyproject.toml cannot declare: a wheel carries the shipped
specs, the top-level policies/ and topologies/ folders, inside the package as
harness/_data/policies/ and harness/_data/topologies/, where harness.paths
finds them when callwall runs from an installed wheel. The folders stay where
they are in the repository; an editable install reads them there instead.
Everything else about the package is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("policies", "topologies")  # harness/paths.py: SPEC_FOLDERS
DATA = Path("harness", "_data")  # harness/paths.py: PACKAGE_DATA


def _not_yaml(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if not n.endswith(".yaml") and not Path(folder, n).is_dir()}


class BuildPyWithSpecs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # harness.paths reads the checkout's folders
            return
        for folder in SHIPPED:
            target = Path(self.build_lib) / DATA / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / folder, target, ignore=_not_yaml)


setup(cmdclass={"build_py": BuildPyWithSpecs})
