"""Byte-level wire formats of the app-like profiles: pure functions, no I/O."""
