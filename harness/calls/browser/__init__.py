"""Chromium as a call endpoint (profiles ``browser`` and ``browser-aiortc``).

Modules:

- :mod:`.client`: :class:`BrowserClient`, the harness side (which processes
  run where, their command lines);
- :mod:`.driver`: the program each browser side runs in its lab host
  (``python -m harness.calls.browser``): Chromium, the page, the signalling
  and the result JSON;
- :mod:`.cdp`: the DevTools protocol over Chromium's pipe;
- :mod:`.chromium`: finding, starting and measuring Chromium, and its flags;
- :mod:`.server`: the call page's HTTP server on the host's loopback;
- :mod:`.stats`: getStats() reports and descriptions read into the aiortc
  peer's figures;
- ``page/``: the call page (HTML and JavaScript, no external assets).
"""

from harness.calls.browser.chromium import missing_chromium
from harness.calls.browser.client import BROWSER_PROFILES, BrowserClient

__all__ = ["BROWSER_PROFILES", "BrowserClient", "missing_chromium"]
