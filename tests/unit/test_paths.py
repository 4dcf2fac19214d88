"""harness.paths finds the shipped specs from a checkout, from an installed
wheel (harness/_data/) and from CALLWALL_HOME, and never writes results into
an installed package. Each layout runs in a fresh interpreter, since paths
resolves once, at import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import paths

REPO = Path(__file__).resolve().parents[2]
PROBE = ("import json; from harness import paths; print(json.dumps({"
         "'home': str(paths.HOME), 'policies': str(paths.POLICIES), "
         "'topologies': str(paths.TOPOLOGIES), 'results': str(paths.RESULTS), "
         "'baseline': str(paths.policy_path('baseline')), "
         "'presets': paths.LINK_PRESETS.is_file()}))")


def run_probe(pythonpath: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("CALLWALL_HOME", "CALLWALL_RESULTS", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(pythonpath), **env}, timeout=60)


def probe(pythonpath: Path, cwd: Path, **env: str) -> dict[str, str]:
    out = run_probe(pythonpath, cwd, **env)
    assert out.returncode == 0, out.stderr
    result: dict[str, str] = json.loads(out.stdout)
    return result


def installed_copy(site: Path) -> Path:
    """harness/ as a wheel installs it: the package without the checkout's
    folders beside it, the specs inside as harness/_data/ (setup.py)."""
    package = site / "harness"
    package.mkdir(parents=True)
    for name in ("__init__.py", "paths.py"):
        shutil.copy(REPO / "harness" / name, package / name)
    for folder in paths.SPEC_FOLDERS:
        shutil.copytree(REPO / folder, package / paths.PACKAGE_DATA / folder)
    return package


def test_a_checkout_reads_its_own_folders(tmp_path: Path) -> None:
    found = probe(REPO, tmp_path)
    assert found["home"] == str(REPO)
    assert found["policies"] == str(REPO / "policies")
    assert found["results"] == str(REPO / "results")
    assert found["baseline"] == str(REPO / "policies" / "baseline.yaml") and found["presets"]


def test_an_installed_package_reads_its_package_data(tmp_path: Path) -> None:
    package = installed_copy(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    found = probe(tmp_path / "site", work)
    assert found["home"] == str(package / "_data")
    assert found["baseline"] == str(package / "_data" / "policies" / "baseline.yaml")
    assert found["presets"]
    # results go where the user is, never into site-packages
    assert found["results"] == str(work / "results")


def test_callwall_home_overrides_both(tmp_path: Path) -> None:
    installed_copy(tmp_path / "site")
    home = tmp_path / "home"
    for folder in paths.SPEC_FOLDERS:
        shutil.copytree(REPO / folder, home / folder)
    for pythonpath in (REPO, tmp_path / "site"):
        found = probe(pythonpath, tmp_path, CALLWALL_HOME=str(home))
        assert found["policies"] == str(home / "policies")
        assert found["baseline"] == str(home / "policies" / "baseline.yaml")
        assert found["results"] == str(home / "results")


def test_callwall_results_overrides_the_results_folder(tmp_path: Path) -> None:
    found = probe(REPO, tmp_path, CALLWALL_RESULTS=str(tmp_path / "out"))
    assert found["results"] == str(tmp_path / "out")


def test_a_package_without_its_data_says_what_it_looked_for(tmp_path: Path) -> None:
    package = installed_copy(tmp_path / "site")
    shutil.rmtree(package / paths.PACKAGE_DATA)
    out = run_probe(tmp_path / "site", tmp_path)
    assert out.returncode != 0
    assert "baseline: no such file, and no policies/baseline.yaml (known: none)" in out.stderr
