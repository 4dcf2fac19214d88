"""A browser renders report.html: headless Chromium screenshots the report of a
synthetic run, offline, and the picture is neither empty nor one colour, and
shows the matrix's pass and fail colours (so the inline CSS applied)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report.html import write_report
from tests.unit.test_report import ENVIRONMENT, build_run

CHROMIUM_NAMES = ("chromium", "chromium-browser")
RENDER_TIMEOUT_S = 120
# The matrix's cell backgrounds (see harness/report/html.py STYLE).
PASS_RGB, FAIL_RGB = (0xDF, 0xF3, 0xE4), (0xFB, 0xE1, 0xE1)


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("needs a headless browser: install the Debian package chromium "
                "(apt-get install --no-install-recommends chromium)")


def screenshot(html_file: Path, png: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--screenshot={png}", "--window-size=1280,2000", html_file.as_uri()]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S,
                          env=env, check=False)


def test_chromium_renders_the_report(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "results", environment=ENVIRONMENT)
    report = write_report(run_dir)
    png = tmp_path / "report.png"
    result = screenshot(report, png, tmp_path / "profile")
    assert png.is_file(), f"no screenshot; chromium exited {result.returncode}:\n{result.stderr}"
    assert png.stat().st_size > 20_000
    try:
        from PIL import Image
    except ImportError:  # matplotlib brings Pillow; without it, the size must do
        return
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1280, 2000)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is (nearly) a single colour"
    present = {colour for _, colour in colours}
    assert PASS_RGB in present and FAIL_RGB in present, "the matrix's colours are missing"
