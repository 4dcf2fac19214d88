"""Every third-party module harness/ imports is declared in pyproject.toml,
and every declared runtime dependency is imported: read from the source's
imports (AST), not from what happens to be installed."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "harness"
# Not from PyPI: Debian's package, which the venv sees through system site-packages.
FROM_APT = {"mininet"}
# The pytest plugin runs only under pytest, which the `test` extra brings.
EXTRA_FOR = {"testing": "test"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, requirement
        names.add(normalized(match.group()))
    return names


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {name: requirement_names(requirements)
              for name, requirements in project.get("optional-dependencies", {}).items()}
    return requirement_names(project["dependencies"]), extras


def third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the harness packages that import it."""
    found: dict[str, set[str]] = {}
    for path in HARNESS.rglob("*.py"):
        package = path.relative_to(HARNESS).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("harness", "__future__"):
                    found.setdefault(top, set()).add(package)
    return found


@functools.cache
def distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution(module: str) -> str:
    dists = distributions().get(module)
    assert dists, f"{module}: imported by harness/ but no installed distribution provides it"
    return normalized(dists[0])


def test_every_import_is_declared() -> None:
    runtime, extras = declared()
    undeclared = []
    for module, packages in sorted(third_party_imports().items()):
        if module in FROM_APT:
            continue
        dist = distribution(module)
        for package in packages:
            allowed = runtime | extras.get(EXTRA_FOR.get(package, ""), set())
            if dist not in allowed:
                undeclared.append(f"{module} ({dist}) in harness/{package}")
    assert not undeclared, "imported but not declared: " + ", ".join(undeclared)


def test_every_runtime_dependency_is_imported() -> None:
    runtime, _ = declared()
    imported = {distribution(m) for m in third_party_imports() if m not in FROM_APT}
    assert runtime - imported == set(), "declared but never imported by harness/"


def test_test_tools_are_not_runtime_dependencies() -> None:
    runtime, extras = declared()
    assert {"pytest", "hypothesis", "pytest-xdist"} <= extras["test"]
    assert not runtime & (extras["test"] | extras["dev"])
