"""results.json's environment records the code's commit: `git describe` of
the checkout harness/ runs from, else the package version."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from pathlib import Path

import pytest

import harness
from harness.netns import environment
from harness.netns.environment import describe_environment, source_commit

CHECKOUT = Path(harness.__file__).resolve().parent.parent


def git_describe(root: Path) -> str:
    out = subprocess.run(["git", "-c", f"safe.directory={root}", "-C", str(root), "describe",
                          "--always", "--dirty"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None or not (CHECKOUT / ".git").exists(),
                    reason="not a git checkout, or no git")
def test_a_checkout_records_git_describe() -> None:
    assert environment.SOURCE_ROOT == CHECKOUT
    assert source_commit() == git_describe(CHECKOUT)


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_a_fresh_repository_records_its_commit_and_dirtiness(tmp_path: Path) -> None:
    def git(*argv: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                        *argv], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert source_commit(tmp_path) == head
    (tmp_path / "f").write_text("2")
    assert source_commit(tmp_path) == f"{head}-dirty"


def test_without_git_metadata_it_is_the_package_version(tmp_path: Path) -> None:
    assert source_commit(tmp_path) == harness.__version__


def test_a_broken_repository_falls_back_to_the_package_version(tmp_path: Path) -> None:
    (tmp_path / ".git").write_text("gitdir: /nonexistent\n")
    assert source_commit(tmp_path) == harness.__version__


def test_no_git_program_falls_back_to_the_package_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert source_commit(tmp_path) == harness.__version__


def test_the_version_is_the_installed_distributions() -> None:
    assert harness.__version__ == importlib.metadata.version("callwall")


def test_the_environment_carries_the_commit() -> None:
    env = describe_environment()
    assert env["commit"] == source_commit()
    assert env["versions"]["callwall"] == harness.__version__
