"""Moved to harness.testing.rootsnapshot (the pytest plugin's `root_snapshot`
fixture); kept so that existing imports keep working."""

from harness.testing.rootsnapshot import RootSnapshot

__all__ = ["RootSnapshot"]
