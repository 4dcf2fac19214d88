"""callwall: a network-emulation testbed for censored voice calls.

The layers of this package, and what each may import, are in pyproject.toml
(`[tool.importlinter]`) and CONTRIBUTING.md."""

from importlib import metadata as _metadata

try:
    # From git through setuptools-scm when the package was built or installed.
    __version__ = _metadata.version("callwall")
except _metadata.PackageNotFoundError:  # a tree on sys.path that was never installed
    __version__ = "0+unknown"
