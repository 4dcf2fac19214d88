"""One side of a SIP call, run inside a lab host: starts baresip on the
files harness.calls.sip wrote (``-f DIR``), drives it through its ctrl_tcp
interface, reads what it prints, and writes the side's result JSON (the
fields harness.measure.peer.PeerReport reads) and the received audio.

Usage::

    python -m harness.calls.sip_peer --role caller|callee --config-dir DIR \\
        --strategy direct|turn-udp --recordings DIR --out result.json \\
        [--dial sip:callee@IP] [--record received.wav] [--media-seconds 6] \\
        [--setup-timeout 15] [--stall-timeout 3] [--ctrl-port 4444] \\
        [--baresip-log FILE] [--events events.jsonl]

The call, as each side sees it (times from the call attempt: the caller's
``dial`` that reached the callee, the callee's incoming INVITE):

* the callee waits for its registration at the proxy, then for the INVITE,
  which it answers by itself (``answermode=auto``);
* the caller dials; baresip sends no INVITE before its media-NAT has gathered
  (a STUN Binding answered, or a TURN allocation made): with ICE, a Binding
  Request that gets no answer ends the call after about 2 s of retries; a TURN
  Allocate is retried past the setup timeout. A ``404``/``480`` from the proxy
  (the callee not registered yet: both sides start together) is dialled again
  until the setup timeout;
* media starts when RTP has arrived and baresip's recorder has started (with
  ICE: once its checks completed). ``setup_s`` is the time to that moment;
  ``sip_established_s`` the time to the 200 OK;
* the media window runs ``--media-seconds`` from there, sampling the RTP
  counters once a second (``audio_debug``); no packet for ``--stall-timeout``
  seconds fails it with ``media-stalled``;
* after the window, each side waits for one more RTCP sender report (at most
  RTCP_WAIT_S) so that its loss, jitter and round trip cover the window:
  baresip computes them only when a sender report arrives, every 5 s. Then
  the caller hangs up and the callee waits for the BYE.

Figures: ``packets_sent``/``packets_received`` are baresip's totals for the
call (rtp_stats); ``frames_received`` the packets (20 ms frames) received in
the window; ``loss_pct``, ``jitter_ms`` (interarrival jitter of what this side
received) and ``rtt_ms`` (``rtt_method`` rtcp-sr-rr) from the last RTCP report;
``selected_pair`` from the ICE dump (``direct``) or the TURN media-NAT's
addresses (``turn-udp``). The recorder writes every decoded frame (Opus
concealment fills a lost one) from the start of the audio stream: the
received WAV starts at most a fraction of a second into the other side's
speech, which the PESQ alignment (harness.measure.pesq_score, +-1 s) absorbs.

Errors (``error``/``failure_stage``): gathering-failed (the caller's STUN
Binding Requests got no answer: baresip 1.0 ends the call then, before any
INVITE), no-local-candidates (``turn-udp``: no TURN allocation, so no
candidate at all), setup-timeout (stage signalling: no final answer, or no
INVITE came to a registered callee; ice: the checks did not complete; media:
no RTP), ice-failed, sip-rejected (a final error answer),
signalling-unreachable (the proxy could not be reached, or the callee could
not register), call-dropped / peer-hung-up (the call closed during the
window), media-stalled, bad-audio-file, terminated (SIGTERM), and
"internal-error: ..." (baresip would not start or died; a bug).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.calls.events import EventLog
from harness.calls.result_file import write_json_atomically
from harness.calls.sip_baresip import (
    AudioDebug,
    BaresipFacts,
    NetstringReader,
    RtcpStats,
    SelectedPair,
    command,
    decode_message,
    parse_audio_debug,
    split_lines,
)
from harness.calls.sip_config import CODEC, CTRL_HOST, CTRL_PORT, FRAME_MS, MEDIA_NAT, baresip_argv

POLL_S = 0.05
SAMPLE_S = 1.0
RTCP_WAIT_S = 6.0
BYE_WAIT_S = 4.0
CTRL_CONNECT_S = 5.0
COMMAND_TIMEOUT_S = 2.0
EXIT_WAIT_S = 5.0
REDIAL_S = 0.5
# The callee's deadlines count from its own start, the caller starts a moment later.
CALLEE_SLACK_S = 2.0
NOT_REGISTERED = ("404", "480")
PR_SET_PDEATHSIG = 1


class CallFailed(Exception):
    def __init__(self, error: str, stage: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error, self.stage, self.detail = error, stage, detail


@dataclass
class Progress:
    """Each moment of the call (monotonic seconds), as events and lines arrive."""

    started: float
    attempt: float | None = None
    registered: float | None = None
    register_failures: list[str] = field(default_factory=list)
    incoming: float | None = None
    established: float | None = None
    rtp: float | None = None
    media: float | None = None
    closed: float | None = None
    closed_reason: str | None = None
    dials: int = 0
    rtcp: RtcpStats | None = None
    rtcp_at: float | None = None
    rtcp_reports: int = 0
    facts: BaresipFacts = field(default_factory=BaresipFacts)


@dataclass
class Window:
    started: float | None = None
    ended: float | None = None
    received_at_start: int | None = None
    received_at_end: int | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    addresses: AudioDebug | None = None


class Baresip:
    """The baresip process and its control connection."""

    def __init__(self, config_dir: Path, log: Path, ctrl_port: int,
                 progress: Progress, lock: threading.Lock) -> None:
        self.progress, self.lock = progress, lock
        self.log = log.open("ab")
        self.log_lock = threading.Lock()
        self.proc = subprocess.Popen(baresip_argv(config_dir), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        self.responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()
        self.sock = self._connect(ctrl_port)
        self.ctrl_reader = threading.Thread(target=self._read_ctrl, daemon=True)
        self.ctrl_reader.start()
        self.send_lock = threading.Lock()

    def _connect(self, port: int) -> socket.socket:
        deadline = time.monotonic() + CTRL_CONNECT_S
        while True:
            if self.proc.poll() is not None:
                raise CallFailed(f"internal-error: baresip exited with {self.proc.returncode} "
                                 "before its control interface came up", "process",
                                 "; ".join(self.progress.facts.problems) or None)
            try:
                return socket.create_connection((CTRL_HOST, port), timeout=1.0)
            except OSError:
                if time.monotonic() >= deadline:
                    raise CallFailed("internal-error: baresip's ctrl_tcp did not listen",
                                     "process") from None
                time.sleep(0.1)

    def _write_log(self, data: bytes) -> None:
        with self.log_lock:
            self.log.write(data)
            self.log.flush()

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        rest = b""
        while chunk := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
            self._write_log(chunk)
            lines, rest = split_lines(rest + chunk)
            now = time.monotonic()
            with self.lock:
                for line in lines:
                    self.progress.facts.feed(line, now)
        if rest:
            with self.lock:
                self.progress.facts.feed(rest.decode("utf-8", "replace"), time.monotonic())

    def _read_ctrl(self) -> None:
        reader = NetstringReader()
        self.sock.settimeout(None)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            for payload in reader.feed(data):
                message = decode_message(payload)
                if message is None:
                    continue
                if message.get("response"):
                    self._write_log(b"\n[ctrl_tcp response] " + payload + b"\n")
                    self.responses.put(message)
                elif message.get("event"):
                    self._write_log(b"\n[ctrl_tcp event] " + payload + b"\n")
                    with self.lock:
                        on_event(self.progress, message, time.monotonic())

    def command(self, name: str, params: str | None = None) -> dict[str, Any] | None:
        """Send one command and wait for its answer (None on timeout)."""
        token = f"{name}-{time.monotonic_ns()}"
        with self.send_lock:
            while not self.responses.empty():
                self.responses.get_nowait()
            try:
                self.sock.sendall(command(name, params, token))
            except OSError:
                return None
            deadline = time.monotonic() + COMMAND_TIMEOUT_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    answer = self.responses.get(timeout=left)
                except queue.Empty:
                    return None
                if answer.get("token") == token:
                    return answer
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (baresip ends its calls and closes its files), SIGKILL if it lingers."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_WAIT_S)
        self.reader.join(timeout=EXIT_WAIT_S)
        with contextlib.suppress(OSError):
            self.sock.close()
        with self.log_lock:
            self.log.close()


def on_event(progress: Progress, event: dict[str, Any], now: float) -> None:
    """Fold one ctrl_tcp event into `progress`."""
    kind = event.get("type")
    if kind == "REGISTER_OK" and progress.registered is None:
        progress.registered = now
    elif kind == "REGISTER_FAIL":
        progress.register_failures.append(str(event.get("param", "")))
    elif kind == "CALL_INCOMING" and progress.incoming is None:
        progress.incoming = now
    elif kind == "CALL_ESTABLISHED" and progress.established is None:
        progress.established = now
    elif kind == "CALL_RTPESTAB" and progress.rtp is None:
        progress.rtp = now
    elif kind == "CALL_RTCP":
        stats = RtcpStats.from_event(event)
        if stats is not None:
            progress.rtcp, progress.rtcp_at = stats, now
            progress.rtcp_reports += 1
    elif kind == "CALL_CLOSED":
        progress.closed = now
        progress.closed_reason = str(event.get("param", "")) or None


@dataclass(frozen=True)
class Options:
    role: str
    config_dir: Path
    strategy: str
    recordings: Path
    out: Path
    dial: str | None
    record: Path | None
    media_s: float
    setup_timeout_s: float
    stall_timeout_s: float
    ctrl_port: int
    baresip_log: Path
    events: Path | None


class SipPeer:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.progress = Progress(started=time.monotonic())
        self.lock = threading.Lock()
        self.window = Window()
        self.events = EventLog(options.events)
        self.failure: CallFailed | None = None
        self.failed_at: float | None = None
        self.terminated = threading.Event()
        self.baresip: Baresip | None = None

    # -- the call ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.baresip = Baresip(self.options.config_dir, self.options.baresip_log,
                                   self.options.ctrl_port, self.progress, self.lock)
            if self.options.role == "caller":
                self._caller_setup()
            else:
                self._callee_setup()
            self._media_window()
            self._finish()
        except CallFailed as failure:
            self._fail(failure)
        finally:
            if self.baresip is not None:
                self.baresip.stop()

    def _fail(self, failure: CallFailed) -> None:
        self.failure, self.failed_at = failure, time.monotonic()
        self.events.emit("failed", at=self.failed_at, error=failure.error, stage=failure.stage)

    def _check(self) -> None:
        if self.terminated.is_set():
            raise CallFailed("terminated", self._stage(), "stopped by SIGTERM/SIGINT")
        assert self.baresip is not None
        if not self.baresip.alive():
            raise CallFailed(f"internal-error: baresip exited with {self.baresip.proc.returncode}",
                             self._stage(), "; ".join(self.progress.facts.problems) or None)
        problems = self.progress.facts.problems
        if any("aufile" in p or "must have" in p for p in problems):
            raise CallFailed("bad-audio-file", "media", "; ".join(problems))

    def _caller_setup(self) -> None:
        assert self.baresip is not None and self.options.dial is not None
        self._attempt()
        deadline = time.monotonic() + self.options.setup_timeout_s
        self._dial()
        while not self._media_started():
            self._check()
            with self.lock:
                closed, reason = self.progress.closed, self.progress.closed_reason
            if closed is not None:
                if _not_registered(reason) and time.monotonic() + REDIAL_S < deadline:
                    # The callee had not registered yet (both sides start together):
                    # the call attempt is the dial that reaches it.
                    time.sleep(REDIAL_S)
                    self.progress.attempt = time.monotonic()
                    self._dial()
                    continue
                raise self._closed_before_media(reason)
            if time.monotonic() >= deadline:
                raise self._setup_timeout()
            time.sleep(POLL_S)

    def _dial(self) -> None:
        assert self.baresip is not None and self.options.dial is not None
        with self.lock:
            self.progress.closed = self.progress.closed_reason = None
            self.progress.dials += 1
        answer = self.baresip.command("dial", self.options.dial)
        if answer is None or not answer.get("ok"):
            raise CallFailed("internal-error: baresip refused to dial", "signalling",
                             str(answer.get("data")) if answer else "no answer")

    def _callee_setup(self) -> None:
        deadline = self.progress.started + self.options.setup_timeout_s + CALLEE_SLACK_S
        while not self._media_started():
            self._check()
            with self.lock:
                incoming = self.progress.incoming or self.progress.facts.incoming_s
                closed, reason = self.progress.closed, self.progress.closed_reason
            if incoming is not None and self.progress.attempt is None:
                self._attempt(incoming)
            if closed is not None:
                raise self._closed_before_media(reason)
            if time.monotonic() >= deadline:
                raise self._setup_timeout()
            time.sleep(POLL_S)

    def _attempt(self, at: float | None = None) -> None:
        self.progress.attempt = time.monotonic() if at is None else at
        self.events.emit("attempt", at=self.progress.attempt)

    def _media_started(self) -> bool:
        with self.lock:
            facts = self.progress.facts
            if self.progress.rtp is None or facts.recording_s is None:
                return False
            self.progress.media = max(self.progress.rtp, facts.recording_s)
        self.events.emit("media", at=self.progress.media)
        return True

    def _media_window(self) -> None:
        assert self.baresip is not None and self.progress.media is not None
        first = self._sample()
        self.window.started = self.progress.media
        self.window.received_at_start = first.received if first else None
        end = self.progress.media + self.options.media_s
        last_received, last_change = (first.received if first else None), time.monotonic()
        next_sample = time.monotonic() + SAMPLE_S
        while time.monotonic() < end:
            self._check()
            with self.lock:
                closed, reason = self.progress.closed, self.progress.closed_reason
            if closed is not None:
                self.window.ended = closed
                raise CallFailed(self._closed_kind(reason), "media", reason)
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_S
                sample = self._sample()
                if sample is not None and sample.received is not None:
                    if sample.received != last_received:
                        last_received, last_change = sample.received, time.monotonic()
                    self.window.received_at_end = sample.received
            if time.monotonic() - last_change >= self.options.stall_timeout_s:
                self.window.ended = time.monotonic()
                raise CallFailed("media-stalled", "media",
                                 f"no RTP packet for {self.options.stall_timeout_s:g} s")
            time.sleep(POLL_S)
        last = self._sample()
        if last is not None and last.received is not None:
            self.window.received_at_end = last.received
        self.window.ended = time.monotonic()

    def _sample(self) -> AudioDebug | None:
        assert self.baresip is not None
        answer = self.baresip.command("audio_debug")
        if answer is None or not isinstance(answer.get("data"), str):
            return None
        parsed = parse_audio_debug(answer["data"])
        self.window.samples.append({"monotonic": round(time.monotonic(), 3),
                                    "sent": parsed.sent, "received": parsed.received,
                                    "lost": None, "jitter_ms": None})
        if parsed.local is not None:
            self.window.addresses = parsed
        return parsed

    def _finish(self) -> None:
        """One more RTCP report after the window, then the end of the call."""
        assert self.baresip is not None and self.window.ended is not None
        deadline = self.window.ended + RTCP_WAIT_S
        while time.monotonic() < deadline and self.baresip.alive():
            with self.lock:
                if (self.progress.rtcp_at or 0.0) >= self.window.ended \
                        or self.progress.closed is not None:
                    break
            time.sleep(POLL_S)
        if self.options.role == "caller":
            self.baresip.command("hangup")
        deadline = time.monotonic() + BYE_WAIT_S
        while time.monotonic() < deadline and self.baresip.alive():
            with self.lock:
                if self.progress.closed is not None:
                    break
            time.sleep(POLL_S)

    # -- classification -----------------------------------------------------------

    def _stage(self) -> str:
        progress = self.progress
        if progress.media is not None:
            return "media"
        if self.options.role == "caller" and progress.facts.gathered_s is None:
            return "gathering"
        if progress.established is None:
            return "signalling"
        if self.options.strategy in MEDIA_NAT and MEDIA_NAT[self.options.strategy] == "ice" \
                and progress.facts.ice_complete_s is None:
            return "ice"
        return "media"

    def _setup_timeout(self) -> CallFailed:
        facts, progress = self.progress.facts, self.progress
        stage = self._stage()
        detail = "; ".join(facts.problems) or None
        if self.options.role == "callee" and self._registered() is None:
            why = "; ".join(progress.register_failures) or "no answer from the proxy"
            return CallFailed("signalling-unreachable", "signalling",
                              f"could not register at the SIP proxy: {why}")
        if stage == "gathering":
            return self._gathering_failed("no answer within the setup timeout")
        if stage == "signalling" and self.options.role == "callee" and progress.attempt is None:
            return CallFailed("setup-timeout", stage, "registered, but no INVITE arrived")
        if stage == "ice" and facts.ice_failed:
            return CallFailed("ice-failed", stage, detail)
        return CallFailed("setup-timeout", stage, detail)

    def _registered(self) -> float | None:
        return self.progress.registered or self.progress.facts.registered_s

    def _gathering_failed(self, how: str) -> CallFailed:
        """The caller's media-NAT got no STUN answer (``gathering-failed``) or
        no TURN allocation (``no-local-candidates``: relay only, it has no
        candidate at all): baresip sends no INVITE then."""
        turn = self.options.strategy == "turn-udp"
        kind = "no-local-candidates" if turn else "gathering-failed"
        asked = "TURN Allocate requests" if turn else "STUN Binding Requests"
        problems = "; ".join(self.progress.facts.problems)
        return CallFailed(kind, "gathering",
                          f"its {asked} got no usable answer ({how}"
                          f"{': ' + problems if problems else ''}); baresip sends no INVITE "
                          "before its media-NAT has gathered")

    def _closed_before_media(self, reason: str | None) -> CallFailed:
        text = reason or "closed"
        if self.options.role == "caller" and self.progress.facts.gathered_s is None:
            return self._gathering_failed(f"the call closed: {text}")
        if self.progress.established is None:
            unreachable = any(word in text.lower()
                              for word in ("refused", "unreachable", "timed out", "reset"))
            return CallFailed("signalling-unreachable" if unreachable else "sip-rejected",
                              "signalling", text)
        if self.progress.facts.ice_failed:
            return CallFailed("ice-failed", "ice", text)
        return CallFailed(self._closed_kind(reason), self._stage(), text)

    def _closed_kind(self, reason: str | None) -> str:
        text = (reason or "").lower()
        remote = ("connection reset" in text or text.startswith("bye") or "hangup" in text
                  or "terminated" in text)
        return "peer-hung-up" if remote else "call-dropped"

    # -- the result -------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        progress, facts, window = self.progress, self.progress.facts, self.window
        attempt = progress.attempt
        origin = attempt if attempt is not None else progress.started

        def since(moment: float | None) -> float | None:
            return None if moment is None else round(moment - origin, 3)

        connected = progress.media is not None
        totals = facts.totals
        rtcp = progress.rtcp
        frames = (window.received_at_end - (window.received_at_start or 0)
                  if window.received_at_end is not None else 0)
        window_s = (round(window.ended - window.started, 3)
                    if window.started is not None and window.ended is not None else None)
        selected = self._selected()
        out: dict[str, Any] = {
            "role": self.options.role, "profile": "sip", "strategy": self.options.strategy,
            "connected": connected, "setup_s": since(progress.media) if connected else None,
            "sip_established_s": since(progress.established),
            "ice_s": since(facts.ice_complete_s), "recording_s": since(facts.recording_s),
            "codec": CODEC, "frame_ms": FRAME_MS,
            "packets_sent": totals.packets_sent if totals else None,
            "packets_received": totals.packets_received if totals else None,
            "packets_lost": rtcp.rx_lost if rtcp else None,
            "loss_pct": rtcp.loss_pct if rtcp and connected else None,
            "jitter_ms": rtcp.jitter_ms if rtcp and connected else None,
            "rtt_ms": rtcp.rtt_ms if rtcp else None,
            "rtt_method": "rtcp-sr-rr" if rtcp and rtcp.rtt_ms is not None else None,
            "rtcp_reports": progress.rtcp_reports,
            "rtcp_at_s": since(progress.rtcp_at),
            "received_bitrate_kbps": totals.bitrate_received_kbps if totals else None,
            "frames_received": max(0, frames) if connected else 0,
            "media_seconds": window_s,
            "selected_pair": selected.to_dict() if selected else None,
            "media_nat": facts.media_nat, "dials": progress.dials,
            "sip_close_reason": progress.closed_reason,
            "baresip_summary": facts.summary,
            "baresip_problems": facts.problems or None,
            "timeline": window.samples,
            "error": None, "failure_stage": None, "detail": None, "failed_at_s": None,
        }
        if self.failure is not None:
            out.update(error=self.failure.error, failure_stage=self.failure.stage,
                       detail=self.failure.detail, failed_at_s=since(self.failed_at))
        return out

    def _selected(self) -> SelectedPair | None:
        facts, addresses = self.progress.facts, self.window.addresses
        if facts.media_nat == "ice":
            return facts.selected
        if facts.media_nat == "turn" and addresses is not None \
                and addresses.local and addresses.remote:
            return SelectedPair("relay", addresses.local, "relay", addresses.remote, "turn")
        return None

    def save_recording(self) -> str | None:
        """The decoded audio as `--record` (the recorder's own file renamed, or
        several joined), the sent-audio dumps removed; a note on what was kept."""
        directory = self.options.recordings
        decoded = sorted(directory.glob("dump-*-dec.wav"))
        for sent in directory.glob("dump-*-enc.wav"):
            sent.unlink(missing_ok=True)
        if self.options.record is None or not decoded:
            for path in decoded:
                path.unlink(missing_ok=True)
            return None if decoded else "no recording"
        if len(decoded) == 1:
            os.replace(decoded[0], self.options.record)
        else:
            _join_wavs(decoded, self.options.record)
            for path in decoded:
                path.unlink(missing_ok=True)
        return f"{len(decoded)} recording(s)"


def _join_wavs(parts: Sequence[Path], target: Path) -> None:
    with wave.open(str(parts[0]), "rb") as first:
        params = first.getparams()
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        for part in parts:
            with wave.open(str(part), "rb") as handle:
                out.writeframes(handle.readframes(handle.getnframes()))


def _not_registered(reason: str | None) -> bool:
    return reason is not None and any(reason.startswith(code) for code in NOT_REGISTERED)


def _die_with_parent() -> None:
    """In the child: SIGTERM when this wrapper dies, however it dies, so that
    no baresip outlives the process the harness owns."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def write_json(path: Path, result: dict[str, Any]) -> None:
    write_json_atomically(path, result)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m harness.calls.sip_peer",
                                     description="one side of a SIP call (baresip)")
    parser.add_argument("--role", choices=("caller", "callee"), required=True)
    parser.add_argument("--config-dir", type=Path, required=True)
    parser.add_argument("--strategy", choices=tuple(MEDIA_NAT), required=True)
    parser.add_argument("--recordings", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dial")
    parser.add_argument("--record", type=Path)
    parser.add_argument("--media-seconds", type=float, default=6.0)
    parser.add_argument("--setup-timeout", type=float, default=15.0)
    parser.add_argument("--stall-timeout", type=float, default=3.0)
    parser.add_argument("--ctrl-port", type=int, default=CTRL_PORT)
    parser.add_argument("--baresip-log", type=Path)
    parser.add_argument("--events", type=Path)
    args = parser.parse_args(argv)
    if args.role == "caller" and not args.dial:
        parser.error("the caller needs --dial")
    for name in ("media_seconds", "setup_timeout", "stall_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    log = args.baresip_log or args.out.with_name(f"{args.role}-baresip.log")
    return Options(role=args.role, config_dir=args.config_dir, strategy=args.strategy,
                   recordings=args.recordings, out=args.out, dial=args.dial,
                   record=args.record, media_s=args.media_seconds,
                   setup_timeout_s=args.setup_timeout, stall_timeout_s=args.stall_timeout,
                   ctrl_port=args.ctrl_port, baresip_log=log, events=args.events)


def main(argv: Sequence[str] | None = None, stderr: IO[str] = sys.stderr) -> int:
    options = parse_args(argv)
    peer = SipPeer(options)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: peer.terminated.set())
    status = 0
    try:
        peer.run()
    except Exception as exc:  # a bug: still write what is known
        peer._fail(CallFailed(f"internal-error: {type(exc).__name__}: {exc}"[:200], "process"))
        status = 1
    result = peer.result()
    try:
        result["recording_note"] = peer.save_recording()
    except OSError as exc:
        result["recording_note"] = f"could not keep the recording: {exc}"
    write_json(options.out, result)
    if str(result.get("error") or "").startswith("internal-error"):
        print(f"sip_peer {options.role}: {result['error']} ({result.get('detail')})",
              file=stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
