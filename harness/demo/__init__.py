"""A scripted demonstration for a class (`callwall demo`, `make demo`): one
call, the censor changing under it in timed phases, a live page that shows
and plays each phase, and afterwards an offline page, a timeline picture, a
WAV per phase and a handout in results/<run>/demo/.

The script (scenarios/demos/*.yaml) is read by harness.spec.demo; the lab,
the censor, the calls and the measurements are the testbed's own
(harness.testbed, harness.censor, harness.calls, harness.measure): the demo
only composes them in time and draws them (runner, live, scoring, audio,
view, page, server, outputs)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.demo.outputs import write_outputs
from harness.demo.runner import DemoRunner, new_view, plan_phases
from harness.demo.server import LiveServer
from harness.demo.sources import load_sources
from harness.demo.view import DemoView, LiveView
from harness.netns.stop_signals import StopRequested
from harness.spec.demo import DemoScript
from harness.spec.policy import Policy, load_policy
from harness.spec.topology import load_topology
from harness.testbed import Lab

MIN_SPEED, MAX_SPEED = 1.0, 10.0

__all__ = ["MAX_SPEED", "MIN_SPEED", "DemoOptions", "load_script_policies", "run_demo"]


@dataclass(frozen=True)
class DemoOptions:
    speed: float = 1.0
    port: int = 0
    open_browser: bool = True

    def __post_init__(self) -> None:
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise ValueError(f"--speed must be between {MIN_SPEED:g} and {MAX_SPEED:g}")
        if not 0 <= self.port <= 65535:
            raise ValueError("--port must be 0 (any free port) to 65535")


def load_script_policies(script: DemoScript) -> dict[str, Policy]:
    """Every policy the script loads, checked against its topology's sets
    before any lab is built (SpecError on a bad one)."""
    topology = load_topology(paths.topology_path(script.topology))
    return {name: load_policy(paths.policy_path(name), topology.sets.keys())
            for name in script.policies}


def run_demo(script: DemoScript, options: DemoOptions, results_dir_for: Callable[[str], Path],
             announce: Callable[[str], None]) -> tuple[DemoView, Path]:
    """Run `script` on a lab of its own, from start to teardown; returns the
    final view and the demo's output directory (results/<run>/demo/). A stop
    signal (Ctrl-C) ends it at any moment with the lab removed
    (StopRequested propagates once it is)."""
    policies = load_script_policies(script)
    plans = plan_phases(script, options.speed)
    sources = load_sources()
    live = LiveView(new_view(script, options.speed, plans, sources))
    view = live.view
    with Lab.create(paths.topology_path(script.topology)) as lab:  # removed whatever happens
        out_dir = results_dir_for(lab.run_id) / "demo"
        (out_dir / "audio").mkdir(parents=True, exist_ok=True)
        with LiveServer(live, out_dir / "audio", options.port) as server:
            try:
                announce(f"live page: {server.url}")
                if options.open_browser:
                    _open_browser(server.url)
                live.publish()
                lab.up(progress=True)
                DemoRunner(lab, script, policies, out_dir, live, plans, announce).run()
                lab.down(progress=True)
                files = write_outputs(view, out_dir, sources)
                announce(f"demo files: {out_dir} (demo.html, timeline.png, handout.md, "
                         f"{len(list((out_dir / 'audio').glob('*.wav')))} WAVs)")
                if options.open_browser:
                    _hold(files["html"], live, announce)
            except StopRequested:
                view.status, view.message = "stopped", "stopped: the lab is being removed"
                live.publish()
                raise
    return view, out_dir


def _open_browser(url: str) -> None:
    """Best effort: a class may well look at the page on another screen."""
    threading.Thread(target=lambda: _quietly_open(url), daemon=True).start()


def _quietly_open(url: str) -> None:
    with contextlib.suppress(Exception):
        webbrowser.open(url)


def _hold(offline: Path, live: LiveView, announce: Callable[[str], None]) -> None:
    """Keep the live page (now showing the end) until Ctrl-C."""
    announce(f"the demo is over; the page stays up until Ctrl-C (offline copy: {offline})")
    try:
        while True:
            signal.pause()
    except StopRequested:
        print("", file=sys.stderr)
