"""Running a demo script on a lab that is up: place the call, change the
censor at each phase boundary, place each phase's new call attempt, and keep
the page's view current every second.

The clock: t = 0 is when both sides of the call decoded their first audio
frame; phase i starts at the sum of the durations before it (scaled by
--speed) and the established call's media window is exactly as long as the
phases it lasts through, so it ends where a hang-up phase begins. Nothing
the demo waits for is unbounded: a policy change that does not finish in
POLICY_TIMEOUT_S is shown as failed and the demo goes on under whatever the
censor holds; a call is waited for at most its own budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness.calls import CallSettings
from harness.calls.base import GRACE_S
from harness.calls.procs import is_speech_reference, reference_audio
from harness.censor.counters import RuleCounter, read_counters
from harness.demo.audio import cut_wav, phase_pesq
from harness.demo.live import CallRun, Row
from harness.demo.scoring import call_figures, check
from harness.demo.sources import Source, cited
from harness.demo.view import (
    CallFigures,
    CallView,
    CounterSnapshot,
    DemoEvent,
    DemoView,
    LiveView,
    PhaseView,
    SourceRef,
)
from harness.spec.demo import MIN_PHASE_S, DemoScript, Phase
from harness.spec.names import Role
from harness.spec.policy import Policy, RareOutcome
from harness.testbed import Lab

POLICY_TIMEOUT_S = 15.0
COUNTER_PERIOD_S = 1.0
TICK_S = 0.25
PUBLISH_S = 1.0
# The established call: how long it may take to connect, and how long it may
# hear nothing before it gives up (a restriction's dropouts must not end it).
CALL_SETUP_TIMEOUT_S = 20.0
CALL_STALL_TIMEOUT_S = 8.0
# An attempt's media window is its phase minus this (tunnel bring-up, setup).
ATTEMPT_LEAD_S = 4.0
MIN_ATTEMPT_MEDIA_S = 3.0
# A phase with an attempt lasts at least until the attempt's setup timeout
# has run out, plus this (its processes' start-up and exit): a blocked
# attempt is judged within its phase.
ATTEMPT_MARGIN_S = 3.0
# A phase is scored this long after it ended, once the stats rows around its end are in.
SCORE_DELAY_S = 1.5
CALL_KEY = "call"
ATTEMPT_KEY = "attempt"

Announce = Callable[[str], None]


class DemoAborted(RuntimeError):
    """The demo cannot go on (the call never connected, the first policy failed)."""


@dataclass(frozen=True)
class PhasePlan:
    index: int
    phase: Phase
    offset_s: float  # when it starts, on the demo's clock
    duration_s: float
    policy: str  # the censor's policy during the phase

    @property
    def end_s(self) -> float:
        return self.offset_s + self.duration_s


def plan_phases(script: DemoScript, speed: float) -> list[PhasePlan]:
    """Each phase's start and length: the script's, `speed` times shorter, at
    least MIN_PHASE_S, and for a phase with an attempt at least long enough
    for the attempt to be judged (its setup timeout is not scaled)."""
    plans, offset, policy = [], 0.0, ""
    for index, phase in enumerate(script.phases):
        duration = max(MIN_PHASE_S, phase.duration_s / speed)
        if phase.attempt is not None:
            duration = max(duration, phase.attempt.at_s / speed
                           + phase.attempt.setup_timeout_s + ATTEMPT_MARGIN_S)
        policy = phase.policy or policy
        plans.append(PhasePlan(index, phase, round(offset, 3), round(duration, 3), policy))
        offset += duration
    return plans


def new_view(script: DemoScript, speed: float, plans: list[PhasePlan],
             sources: dict[str, Source]) -> DemoView:
    phases = [PhaseView(index=p.index, id=p.phase.id, title=p.phase.title,
                        explain=" ".join(p.phase.explain.split()),
                        sources=[SourceRef(s.id, s.title, s.date)
                                 for s in cited(p.phase.sources, sources)],
                        policy=p.policy, loads_policy=p.phase.policy is not None,
                        attempt=p.phase.attempt.strategy if p.phase.attempt else None,
                        hang_up=p.phase.hang_up, planned_s=p.duration_s)
              for p in plans]
    return DemoView(name=script.name, title=script.title,
                    description=" ".join(script.description.split()),
                    profile=script.call.profile, strategy=script.call.strategy,
                    topology=script.topology, speed=speed, phases=phases,
                    message="building the lab")


@dataclass
class _Attempt:
    plan: PhasePlan
    run: CallRun
    key: str
    started: float


@dataclass(frozen=True)
class AudioScore:
    name: str  # CALL_KEY or ATTEMPT_KEY
    audio: str  # the file name in demo/audio/
    audio_s: float
    pesq: float | None
    pesq_status: str


@dataclass
class _PendingScore:
    """A phase that has ended and is not scored yet: scored once its attempt
    has ended, SCORE_DELAY_S after the phase (so that the stats rows around
    its end are in), its audio cut and PESQ in the scorer's thread."""

    plan: PhasePlan
    view: PhaseView
    attempt: _Attempt | None
    ended: float
    job: Future[list[AudioScore]] | None = None


@dataclass
class CounterPoller:
    """Reads the censor's rule counters every COUNTER_PERIOD_S in its own
    thread, so a slow `nft` never holds up the demo."""

    lab: Lab
    latest: tuple[float, list[RuleCounter]] | None = None
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="demo-counters").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        censor = self.lab.host_with_role("censor")
        while not self._stop.is_set():
            try:
                self.latest = (time.monotonic(), read_counters(censor))
                self.error = None
            except Exception as exc:  # shown on the page; the next read may work
                self.error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(COUNTER_PERIOD_S)


class DemoRunner:
    def __init__(self, lab: Lab, script: DemoScript, policies: dict[str, Policy],
                 out_dir: Path, live: LiveView, plans: list[PhasePlan],
                 announce: Announce) -> None:
        self.lab, self.script, self.policies = lab, script, policies
        self.out_dir, self.live, self.plans = out_dir, live, plans
        self.view = live.view
        self.announce = announce
        self.audio_dir = out_dir / "audio"
        self.calls_dir = out_dir / "calls"
        self.t0: float | None = None
        self.call: CallRun | None = None
        self.attempts: list[_Attempt] = []
        self.counters = CounterPoller(lab)
        self.policy = ""
        self._published = 0.0
        self._last_counter_t: float | None = None
        self._scores: list[_PendingScore] = []
        self._scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-score")

    # ------------------------------------------------------------------ the run

    def run(self) -> DemoView:
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self.counters.start()
        try:
            self._start_call()
            for plan in self.plans:
                self._run_phase(plan)
            self._finish()
        except DemoAborted as exc:
            self.view.status, self.view.message = "failed", str(exc)
            self._event(str(exc), "error")
            self.announce(f"demo: {exc}")
        finally:
            self.counters.stop()
            self._scorer.shutdown(wait=False, cancel_futures=True)
            self._publish(force=True)
        return self.view

    def _start_call(self) -> None:
        first = self.plans[0]
        self.view.status, self.view.message = "starting", "placing the call"
        error, took = self._change_policy(first.policy)
        self.view.phases[0].change_s, self.view.phases[0].change_error = took, error
        if error is not None:
            raise DemoAborted(f"the first policy ({first.policy}) did not load: {error}")
        media_s = sum(p.duration_s for p in self.plans if p.phase in self.script.call_phases())
        settings = CallSettings(media_s=round(media_s, 3), setup_timeout_s=CALL_SETUP_TIMEOUT_S,
                                stall_timeout_s=CALL_STALL_TIMEOUT_S, capture_pcap=False)
        profile, strategy = self.script.call.profile, self.script.call.strategy
        self.call = CallRun(self.lab, profile, strategy, settings, self.calls_dir / CALL_KEY)
        self.view.calls[CALL_KEY] = CallView(CALL_KEY, "the call", strategy)
        self._event(f"calling: {profile}, {strategy}, under policy {first.policy}")
        self.announce(f"calling ({profile}, {strategy}) under policy {first.policy}")
        self.call.start()
        deadline = time.monotonic() + CALL_SETUP_TIMEOUT_S + GRACE_S
        while self.call.watch.media_at is None:
            self.call.watch.poll()
            if self.call.done or time.monotonic() > deadline:
                self.call.watch.poll()
                if self.call.watch.media_at is not None:
                    break
                raise DemoAborted("the call did not connect: " + self._why_not(self.call))
            self._publish()
            time.sleep(TICK_S)
        self.t0 = self.call.watch.media_at
        self.view.status = "running"
        self._event("the call connected: both sides hear each other", "ok")

    def _run_phase(self, plan: PhasePlan) -> None:
        """The phase starts on schedule whatever the previous phases left
        running: a previous attempt still winding down is judged when it
        ends, and the phase's own attempt waits for it (a tunnel moves every
        flow of the caller). Only the last phase waits for its attempt."""
        assert self.t0 is not None
        phase, view = plan.phase, self.view.phases[plan.index]
        self._sleep_until(self.t0 + plan.offset_s)
        view.status, view.start_t = "running", self._now()
        self.view.current = plan.index
        if plan.index > 0 and phase.policy is not None:
            view.change_error, view.change_s = self._change_policy(phase.policy)
            if view.change_error:
                self._event(f"phase {plan.index + 1}: the censor did not change: "
                            f"{view.change_error}", "error")
        if phase.hang_up:
            self._event("the running call is hung up")
        self.announce(self._phase_line(plan, view))
        self._event(f"phase {plan.index + 1}: {phase.title}")
        attempt: _Attempt | None = None
        end = self.t0 + plan.end_s
        last = plan.index == len(self.plans) - 1
        while True:
            now = time.monotonic()
            due = phase.attempt is not None and now >= (
                self.t0 + plan.offset_s + phase.attempt.at_s / self.view.speed)
            if attempt is None and due and self._attempts_done(now):
                attempt = self._start_attempt(plan)
            unfinished = phase.attempt is not None and (attempt is None
                                                        or not attempt.run.done)
            if now >= end and not (last and unfinished):
                break
            if last and unfinished and attempt is not None and now > (
                    attempt.started + attempt.run.settings.media_s + self._budget(attempt.run)):
                self._event("the new call did not end within its budget", "error")
                break
            self._tick()
            time.sleep(TICK_S)
        view.end_t, view.status = self._now(), "ended"
        self._scores.append(_PendingScore(plan, view, attempt, time.monotonic()))
        self._tick()

    def _attempts_done(self, now: float) -> bool:
        """Every earlier attempt has ended (or overrun its budget: then go ahead)."""
        for previous in self.attempts:
            if previous.run.done:
                continue
            over = now - previous.started > (previous.run.settings.media_s
                                              + self._budget(previous.run))
            if not over:
                return False
        return True

    def _finish(self) -> None:
        """Wait for the calls to end and every phase to be scored, then score
        every phase again with what only the calls' final reports say (their
        round trip)."""
        runs = [r for r in [self.call, *(a.run for a in self.attempts)] if r is not None]
        deadline = time.monotonic() + max((self._budget(r) + r.settings.media_s for r in runs),
                                          default=0.0)
        while (any(not r.done for r in runs) or self._scores) and time.monotonic() < deadline:
            self._tick()
            time.sleep(TICK_S)
        for run in runs:
            if not run.done:
                self._event(f"{run.call_dir.name} did not end within its budget", "error")
        for pending in self._scores:  # only left when the deadline passed
            pending.view.error = "the phase could not be scored in time"
        self._tick()
        for plan in self.plans:
            view = self.view.phases[plan.index]
            if view.status == "done":
                attempt = next((a for a in self.attempts if a.plan is plan), None)
                self._score_phase(plan, view, attempt)
        self.view.current = None
        self.view.status = "done"
        failed = [p for p in self.view.phases if not p.passed]
        self.view.message = ("every phase showed what the script declares" if not failed else
                             "not as declared: " + ", ".join(f"phase {p.index + 1} ({p.id})"
                                                             for p in failed))
        self._event(self.view.message, "ok" if not failed else "error")
        self.announce(f"demo: {self.view.message}")

    # ------------------------------------------------------------------ actions

    def _change_policy(self, name: str) -> tuple[str | None, float | None]:
        """Load `name` in one nft transaction, within POLICY_TIMEOUT_S: (error, seconds)."""
        outcome: dict[str, str] = {}
        started = time.monotonic()

        def apply() -> None:
            try:
                self.lab.apply_policy(self.policies[name])
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        worker = threading.Thread(target=apply, daemon=True, name="demo-policy")
        worker.start()
        worker.join(POLICY_TIMEOUT_S)
        took = round(time.monotonic() - started, 3)
        if worker.is_alive():
            return f"the change did not finish within {POLICY_TIMEOUT_S:g} s", took
        if "error" in outcome:
            return outcome["error"], took
        self.policy = name
        self._event(f"the censor now runs policy {name} (loaded in {took:.2f} s)")
        return None, took

    def _start_attempt(self, plan: PhasePlan) -> _Attempt:
        assert plan.phase.attempt is not None and self.t0 is not None
        spec = plan.phase.attempt
        remaining = self.t0 + plan.end_s - time.monotonic()
        media_s = max(MIN_ATTEMPT_MEDIA_S, remaining - ATTEMPT_LEAD_S)
        settings = CallSettings(media_s=round(media_s, 3), setup_timeout_s=spec.setup_timeout_s,
                                capture_pcap=False)
        key = f"attempt-{plan.index + 1}"
        run = CallRun(self.lab, self.script.call.profile, spec.strategy, settings,
                      self.calls_dir / key)
        attempt = _Attempt(plan, run, key, time.monotonic())
        self.attempts.append(attempt)
        self.view.calls[key] = CallView(key, f"new call, phase {plan.index + 1}", spec.strategy)
        self._event(f"a new call is placed: {self.script.call.profile}, {spec.strategy}")
        run.start()
        return attempt

    @staticmethod
    def _budget(run: CallRun) -> float:
        """How much longer than its media window a call may run: its setup
        timeout, the grace every call gets, and a tunnel's bring-up."""
        return run.settings.setup_timeout_s + GRACE_S + 10.0

    # ------------------------------------------------------------------ figures

    def _tick(self) -> None:
        """Read what the calls and the censor said since the last tick."""
        assert self.t0 is not None
        self.view.now_t = self._now()
        for key, run in self._runs():
            run.watch.poll()
            self._update_call(self.view.calls[key], run)
        if self.counters.latest is not None and self.counters.latest[0] != self._last_counter_t:
            at, counters = self.counters.latest
            self._last_counter_t = at
            self.view.counters.append(CounterSnapshot(
                t=round(at - self.t0, 2), policy=self.policy,
                rules={c.rule: c.packets for c in counters},
                bytes={c.rule: c.bytes for c in counters}))
        self._advance_scores()
        self._publish()

    def _runs(self) -> list[tuple[str, CallRun]]:
        runs = [(CALL_KEY, self.call)] if self.call is not None else []
        return runs + [(a.key, a.run) for a in self.attempts]

    def _update_call(self, view: CallView, run: CallRun) -> None:
        assert self.t0 is not None
        rows = run.watch.rows(self.t0, run.rtt_ms)
        view.to_callee = [_with_loss(r) for r in rows["to_callee"]]
        view.to_caller = [_with_loss(r) for r in rows["to_caller"]]
        media = run.watch.media_at
        if media is not None and view.media_t is None:
            view.media_t = round(media - self.t0, 2)
            if run is not self.call:
                self._event(f"the new call ({run.strategy}) connected", "ok")
        failure = run.watch.failure
        if failure is not None and view.failed_t is None:
            view.failed_t, view.failure = round(failure[0] - self.t0, 2), failure[1]
            # A new call failing may be the very point of its phase: the checks judge it.
            level = "error" if run is self.call and not self._hung_up_by(failure[0]) else "info"
            self._event(f"{view.label} failed: {failure[1]}", level)
        if run.done and run.error is not None and view.failure is None:
            view.failure = run.error
            self._event(f"{view.label}: the harness could not run it: {run.error}", "error")

    def _hung_up_by(self, monotonic: float) -> bool:
        assert self.t0 is not None
        return any(p.phase.hang_up and monotonic >= self.t0 + p.offset_s for p in self.plans)

    def _scored_calls(self, plan: PhasePlan, attempt: _Attempt | None
                      ) -> list[tuple[str, CallRun, bool]]:
        """(name, call, whether it should carry media through the whole phase)."""
        scored: list[tuple[str, CallRun, bool]] = []
        if self.call is not None and plan.phase in self.script.call_phases():
            scored.append((CALL_KEY, self.call, True))
        if attempt is not None:
            scored.append((ATTEMPT_KEY, attempt.run, False))
        return scored

    def _score_phase(self, plan: PhasePlan, view: PhaseView, attempt: _Attempt | None) -> None:
        """The phase's E-model figures and checks; audio scored earlier is kept."""
        assert view.start_t is not None and view.end_t is not None
        checks = []
        for name, run, whole in self._scored_calls(plan, attempt):
            figures = self._figures(run, view.start_t, view.end_t, whole)
            previous = view.figures.get(name)
            if previous is not None:
                figures.audio, figures.audio_s = previous.audio, previous.audio_s
                figures.pesq, figures.pesq_status = previous.pesq, previous.pesq_status
            view.figures[name] = figures
            expect = plan.phase.expect.call if name == CALL_KEY else plan.phase.expect.attempt
            if expect is not None:
                checks += check(name, expect, figures, self._rare_outcome(plan, run.strategy),
                                self._counted(plan, view))
        view.checks = checks

    def _rare_outcome(self, plan: PhasePlan, strategy: str) -> RareOutcome | None:
        """The rare outcome the phase's policy declares for the call's cell."""
        policy = self.policies.get(plan.policy)
        expected = (policy.expectation(self.script.call.profile, strategy)
                    if policy is not None else None)
        return expected.rarely if expected is not None else None

    def _counted(self, plan: PhasePlan, view: PhaseView) -> frozenset[str]:
        """The rules that counted packets during the phase (the censor's
        counters start at zero when a policy is loaded), by rule id (a
        counter's comment is the id, or 'id: part')."""
        assert view.start_t is not None and view.end_t is not None
        return frozenset(rule.split(":", 1)[0] for snap in self.view.counters
                         if snap.policy == plan.policy
                         and view.start_t <= snap.t <= view.end_t + SCORE_DELAY_S
                         for rule, packets in snap.rules.items() if packets > 0)

    def _advance_scores(self) -> None:
        """Start scoring the phases that are ready, finish those scored."""
        now = time.monotonic()
        for pending in list(self._scores):
            if pending.job is None:
                attempt = pending.attempt
                over = attempt is None or attempt.run.done or now - attempt.started > (
                    attempt.run.settings.media_s + self._budget(attempt.run))
                if over and now >= pending.ended + SCORE_DELAY_S:
                    pending.job = self._scorer.submit(self._audio_job(pending))
                continue
            if not pending.job.done():
                continue
            self._scores.remove(pending)
            self._score_phase(pending.plan, pending.view, pending.attempt)
            try:
                scores = pending.job.result()
            except Exception as exc:  # a broken file: the phase still has its other figures
                scores = []
                self._event(f"phase {pending.plan.index + 1}: audio not scored: {exc}", "error")
            for score in scores:
                figures = pending.view.figures[score.name]
                figures.audio, figures.audio_s = score.audio, score.audio_s
                figures.pesq, figures.pesq_status = score.pesq, score.pesq_status
            pending.view.status = "done"
            self.announce(self._result_line(pending.plan, pending.view))
            self._publish(force=True)

    def _audio_job(self, pending: _PendingScore) -> Callable[[], list[AudioScore]]:
        """What the callee heard of each call during the phase: where it is
        in the received WAV is read now (from the stats rows), the cut and
        PESQ are left to the scorer's thread."""
        assert self.t0 is not None
        view, plan = pending.view, pending.plan
        assert view.start_t is not None and view.end_t is not None
        reference = reference_audio(self.lab)
        speech = is_speech_reference(reference)
        cuts = []
        for name, run, _ in self._scored_calls(plan, pending.attempt):
            callee = run.watch.sides[Role.CALLEE]
            start = callee.recorded_at(self.t0 + view.start_t) or 0.0
            end = callee.recorded_at(self.t0 + view.end_t)
            media_from = max(view.start_t, (callee.media_at or self.t0) - self.t0)
            expected = min(view.end_t - media_from, run.settings.media_s)
            target = self.audio_dir / f"phase-{plan.index + 1}-{plan.phase.id}-{name}.wav"
            scratch = self.calls_dir / f"reference-phase-{plan.index + 1}-{name}.wav"
            cuts.append((name, run.received_wav(), start, end, target, scratch, expected))

        def job() -> list[AudioScore]:
            scores = []
            for name, source, start, end, target, scratch, expected in cuts:
                seconds = None if end is None else cut_wav(source, start, end, target)
                if seconds is None:
                    continue
                if not speech:
                    scores.append(AudioScore(name, target.name, seconds, None,
                                             "no-speech-reference"))
                    continue
                result = phase_pesq(reference, target, max(1.0, expected), scratch)
                scores.append(AudioScore(name, target.name, seconds,
                                         round(result.mos_lqo, 2), result.status))
            return scores

        return job

    def _figures(self, run: CallRun, start_t: float, end_t: float, whole: bool) -> CallFigures:
        assert self.t0 is not None
        rows = run.watch.rows(self.t0, run.rtt_ms)
        sides = run.watch.sides
        failure = run.watch.failure
        failure_t: tuple[float, str] | None = None
        if failure is not None and not (run is self.call and self._hung_up_by(failure[0])):
            failure_t = (failure[0] - self.t0, failure[1])  # not the script's own hang-up
        if run.done and run.error is not None:
            failure_t = (end_t, f"the harness could not run the call: {run.error}")
        return call_figures(rows["to_callee"], rows["to_caller"], start_t, end_t, run.rtt_ms,
                            (sides[Role.CALLER].frame_ms, sides[Role.CALLEE].frame_ms),
                            failure_t, covers_phase=whole)

    # ------------------------------------------------------------------ the page and terminal

    def _now(self) -> float:
        return round(time.monotonic() - (self.t0 or time.monotonic()), 2)

    def _sleep_until(self, monotonic: float) -> None:
        while time.monotonic() < monotonic:
            self._tick()
            time.sleep(min(TICK_S, max(0.0, monotonic - time.monotonic())))

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._published >= PUBLISH_S:
            self._published = now
            if self.t0 is not None and self.view.status == "running":
                self.view.now_t = self._now()
            if self.counters.error:
                self.view.message = f"censor counters unreadable: {self.counters.error}"
            self.live.publish()

    def _event(self, text: str, level: str = "info") -> None:
        at = None if self.t0 is None else self._now()
        self.view.events.append(DemoEvent(at, text, level))
        self._publish(force=True)

    def _phase_line(self, plan: PhasePlan, view: PhaseView) -> str:
        actions = [f"policy {plan.policy}" + ("" if view.loads_policy else " (kept)")]
        if plan.phase.hang_up:
            actions.append("hang up")
        if plan.phase.attempt is not None:
            actions.append(f"new call: {plan.phase.attempt.strategy}")
        if view.change_error:
            actions.append(f"POLICY CHANGE FAILED: {view.change_error}")
        return (f"[+{view.start_t or 0.0:6.1f} s] phase {plan.index + 1}/{len(self.plans)} "
                f"{plan.phase.id}: {plan.phase.title} ({'; '.join(actions)})")

    def _result_line(self, plan: PhasePlan, view: PhaseView) -> str:
        parts = []
        for name, figures in view.figures.items():
            who = "call" if name == CALL_KEY else "new call"
            if figures.media is False:
                parts.append(f"{who}: no media")
            else:
                pesq = f", PESQ {figures.pesq:.2f}" if figures.pesq is not None else ""
                parts.append(f"{who}: MOS {_num(figures.mos)}, loss {_num(figures.loss_pct, 1)} %"
                             + pesq)
        verdict = "as declared" if view.passed else "NOT as declared: " + "; ".join(
            f"{c.subject} expected {c.expected}, observed {c.observed}"
            for c in view.checks if not c.ok)
        return (f"[+{view.end_t or 0.0:6.1f} s] phase {plan.index + 1}/{len(self.plans)} "
                f"{plan.phase.id} ended: {'; '.join(parts) or 'no call to score'} -> {verdict}")

    def _why_not(self, run: CallRun) -> str:
        if run.error:
            return run.error
        failure = run.watch.failure
        if failure is not None:
            return failure[1]
        if run.output is not None:
            return run.output.caller.error or run.output.callee.error or "no media"
        return "no media within its setup timeout"


def _with_loss(row: Row) -> Row:
    """A per-second row with its loss share (a second in which nothing arrived
    counts every packet sent as lost)."""
    received, lost, sent = (int(row.get(k) or 0) for k in ("received", "lost", "sent"))
    loss: float | None = None
    if received > 0:
        loss = round(100.0 * lost / (received + lost), 2)
    elif sent > 0:
        loss = 100.0
    return {**row, "loss_pct": loss}


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
