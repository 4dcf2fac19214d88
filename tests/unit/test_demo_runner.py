"""The demo never hangs on a policy change: one that fails or does not finish
in time is reported (on the page and in the phase) and the demo goes on."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.demo import runner
from harness.demo.runner import DemoRunner, new_view, plan_phases
from harness.demo.view import LiveView
from harness.spec.demo import DEFAULT_DEMO, demo_path, load_demo


class _Lab:
    """Only what a policy change touches: apply_policy, which hangs or fails."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.release = threading.Event()

    def apply_policy(self, policy: Any) -> None:
        if self.behaviour == "hang":
            self.release.wait(10)
        elif self.behaviour == "fail":
            raise RuntimeError("nft refused the ruleset")


def _runner(lab: _Lab, tmp_path: Path) -> DemoRunner:
    script = load_demo(demo_path(DEFAULT_DEMO))
    plans = plan_phases(script, 1.0)
    live = LiveView(new_view(script, 1.0, plans, {}))
    policies = {name: object() for name in script.policies}
    return DemoRunner(lab, script, policies, tmp_path, live, plans,  # type: ignore[arg-type]
                      announce=lambda line: None)


def test_a_hanging_policy_change_times_out(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(runner, "POLICY_TIMEOUT_S", 0.3)
    lab = _Lab("hang")
    demo = _runner(lab, tmp_path)
    started = time.monotonic()
    error, took = demo._change_policy("ru-2025-08-calls")
    lab.release.set()
    assert time.monotonic() - started < 2.0
    assert error == "the change did not finish within 0.3 s" and took is not None
    assert demo.policy == ""  # the page does not claim the new policy


def test_a_failing_policy_change_is_reported(tmp_path: Path) -> None:
    demo = _runner(_Lab("fail"), tmp_path)
    error, _ = demo._change_policy("dpi-stun-drop")
    assert error == "RuntimeError: nft refused the ruleset"
    assert demo.policy == ""


def test_a_policy_change_is_an_event_on_the_page(tmp_path: Path) -> None:
    demo = _runner(_Lab("ok"), tmp_path)
    error, took = demo._change_policy("baseline")
    assert error is None and took is not None and demo.policy == "baseline"
    assert demo.view.events[-1].text.startswith("the censor now runs policy baseline")
