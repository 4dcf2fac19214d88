"""Calibration: the censor and the link emulation measured with real traffic,
never by reading their configuration back.

`make test` runs the short form (fewer rates, shorter runs, wider but still
failing-capable bounds where noted); `make calibrate` sets CALLWALL_CALIBRATE=full
for the full form with the targets the issues state."""

from __future__ import annotations

import os
from typing import Literal

import pytest

Level = Literal["short", "full"]


def calibration_level() -> Level:
    value = os.environ.get("CALLWALL_CALIBRATE", "short")
    if value not in ("short", "full"):
        raise pytest.UsageError(f"CALLWALL_CALIBRATE must be 'short' or 'full', not {value!r}")
    return "full" if value == "full" else "short"


@pytest.fixture(scope="session")
def level() -> Level:
    return calibration_level()
