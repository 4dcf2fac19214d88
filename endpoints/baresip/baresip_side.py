#!/usr/bin/env python3
"""One side of a baresip call, run by callwall inside the baresip image
(endpoint.yaml beside this file says how). Standard library only.

What it does, for --role caller or callee:

1. joins the call's room on the lab's signalling server (newline-delimited
   JSON over TCP: {"join": ROOM}; later lines go to the other member);
2. writes baresip's config, accounts and contacts into --out and starts
   ``baresip -v -f DIR``. SIP runs over UDP on loopback: the caller's baresip
   listens on 127.0.0.1:5060 and the callee's on 127.0.0.2:5060, and on each
   side this script stands in for the other at the other's address,
   carrying every SIP datagram through the room, so the Via and Contact
   headers route every request and answer of the dialog right without a SIP
   server. Media takes the addresses in the SDP: ICE with host and STUN
   candidates (direct) or baresip's TURN media-NAT over UDP (turn-udp);
3. drives baresip over ctrl_tcp (JSON in netstrings on 127.0.0.1:4444): the
   callee announces it is ready and answers by itself (answermode=auto); the
   caller dials, holds the call for --media-s seconds of media, waits for one
   more RTCP report and hangs up;
4. writes --out/result.json: connected, setup_s (from the caller's dial, or
   the callee's first SIP message, to the first audio packet received),
   packets_sent (baresip's RTP counter), packets_received and packets_lost
   (from the last RTCP report: received, and expected minus received),
   jitter_ms and rtt_ms, and received_wav (baresip's sndfile recording of
   the decoded audio it received).

The baresip 1.0.0 settings are those of callwall's native sip profile
(harness/calls/sip_config.py): aufile source, sndfile recorder, Opus mono
20 ms, ice + stun or turn, ctrl_tcp + menu, rtp_stats.
"""

import argparse
import base64
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIP_PORT = 5060
ADDRESS = {"caller": "127.0.0.1", "callee": "127.0.0.2"}
OTHER = {"caller": "callee", "callee": "caller"}
CTRL = ("127.0.0.1", 4444)
FRAME_MS = 20
RTCP_WAIT_S = 6.0
MODULES = ("aufile.so", "sndfile.so", "opus.so", "stun.so", "turn.so", "ice.so")
APP_MODULES = ("account.so", "menu.so", "contact.so", "ctrl_tcp.so", "rtcpsummary.so")
RCVD = re.compile(r"\brcvd=(\d+)")
TX_PACKETS = re.compile(r"TX: packets=(\d+)")


class Failed(Exception):
    """The call failed: `error` is the short reason."""

    def __init__(self, error, detail=""):
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.detail = detail


class Stop(Exception):
    """SIGTERM: write what is known and go."""


def config_text(args, recordings):
    lines = [("poll_method", "epoll"), ("sip_listen", f"{ADDRESS[args.role]}:{SIP_PORT}"),
             ("call_local_timeout", "60"), ("call_max_calls", "1"),
             ("audio_source", f"aufile,{args.audio}"), ("ausrc_srate", "48000"),
             ("ausrc_channels", "1"), ("audio_buffer", "20-160"), ("rtcp_mux", "no"),
             ("jitter_buffer_delay", "5-10"), ("rtp_stats", "yes"),
             ("module_path", "/usr/lib/baresip/modules")]
    lines += [("module", m) for m in MODULES] + [("module_app", m) for m in APP_MODULES]
    lines += [("ctrl_tcp_listen", f"{CTRL[0]}:{CTRL[1]}"), ("snd_path", str(recordings)),
              ("opus_stereo", "no"), ("opus_sprop_stereo", "no")]
    return "".join(f"{key:<24}{value}\n" for key, value in lines)


def accounts_text(args):
    params = ["regint=0", "audio_codecs=opus/48000/2", f"ptime={FRAME_MS}"]
    if args.strategy == "turn-udp":
        turn = args.turn.split(":", 1)[1]
        params += ["medianat=turn", f'stunserver="turn:{turn}"', f"stunuser={args.turn_user}",
                   f"stunpass={args.turn_password}"]
    else:
        params += ["medianat=ice", f'stunserver="{args.stun}"']
    if args.role == "callee":
        params.append("answermode=auto")
    return f"<sip:{args.role}@{ADDRESS[args.role]}>;" + ";".join(params) + "\n"


def netstring(payload):
    return str(len(payload)).encode() + b":" + payload + b","


class Side:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.recordings = Path("/nonexistent")
        self.started = time.monotonic()
        self.attempt_at = None  # caller: the dial; callee: the first SIP message
        self.media_at = None
        self.established = False
        self.closed = None
        self.rtcp = None
        self.rtcp_count = 0
        self.sent = 0
        self.received = 0
        self.peer_ready = False
        self.frames = None
        self.selector = selectors.DefaultSelector()
        self.baresip = None
        self.ctrl = None
        self.ctrl_buffer = b""
        self.replies = []
        self.signal_buffer = b""
        self.budget_at = self.started + args.setup_timeout_s + args.media_s + 12

    # -- plumbing

    def connect_signalling(self):
        host, port = self.args.signalling.rsplit(":", 1)
        self.sig = socket.create_connection((host, int(port)), timeout=5)
        self.sig.setblocking(False)
        self.send_signal({"join": self.args.room})
        self.selector.register(self.sig, selectors.EVENT_READ, "signal")

    def greet(self):
        """The callee says it is ready once its baresip runs; the caller asks."""
        if self.args.role == "caller":
            self.send_signal({"hello": True})
        elif self.ctrl is not None:
            self.send_signal({"ready": True})

    def send_signal(self, message):
        self.sig.setblocking(True)
        self.sig.sendall(json.dumps(message).encode() + b"\n")
        self.sig.setblocking(False)

    def open_bridge(self):
        self.bridge = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bridge.bind((ADDRESS[OTHER[self.args.role]], SIP_PORT))
        self.bridge.setblocking(False)
        self.selector.register(self.bridge, selectors.EVENT_READ, "bridge")

    def start_baresip(self):
        self.out.mkdir(parents=True, exist_ok=True)
        # The image's own /tmp: the accounts file holds the TURN password, and
        # out_dir ends up in the results. The recorder writes there too: 1.0.0's
        # sndfile cuts its file name at 128 characters, path included.
        conf = Path(tempfile.mkdtemp(prefix="baresip-"))
        self.recordings = conf / "rec"
        self.recordings.mkdir()
        (conf / "config").write_text(config_text(self.args, self.recordings))
        accounts = conf / "accounts"
        accounts.touch(mode=0o600)
        accounts.write_text(accounts_text(self.args))
        (conf / "contacts").write_text("")
        self.log = open(self.out / "baresip.log", "wb")
        self.baresip = subprocess.Popen(["baresip", "-v", "-f", str(conf)],
                                        stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ctrl = socket.create_connection(CTRL, timeout=1)
                break
            except OSError:
                if self.baresip.poll() is not None:
                    raise Failed("internal-error",
                                 "baresip exited at start; see baresip.log") from None
                if time.monotonic() > deadline:
                    raise Failed("internal-error",
                                 "baresip's ctrl_tcp did not come up") from None
                time.sleep(0.1)
        self.ctrl.setblocking(False)
        self.selector.register(self.ctrl, selectors.EVENT_READ, "ctrl")

    def command(self, name, params=None):
        body = {"command": name, "token": name}
        if params is not None:
            body["params"] = params
        self.ctrl.setblocking(True)
        self.ctrl.sendall(netstring(json.dumps(body).encode()))
        self.ctrl.setblocking(False)

    def ask(self, name, timeout_s=2.0):
        """A command's answer text (or None)."""
        self.replies = []
        self.command(name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump(0.05)
            for reply in self.replies:
                if reply.get("token") == name:
                    return str(reply.get("data", ""))
        return None

    # -- the loop

    def pump(self, timeout_s):
        if self.baresip is not None and self.baresip.poll() is not None and self.closed is None:
            self.closed = "baresip-exited"
        for key, _ in self.selector.select(timeout_s):
            if key.data == "signal":
                self.read_signal()
            elif key.data == "bridge":
                data, _ = self.bridge.recvfrom(65535)
                self.send_signal({"sip": base64.b64encode(data).decode()})
            elif key.data == "ctrl":
                self.read_ctrl()

    def read_signal(self):
        try:
            chunk = self.sig.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            raise Failed("signalling-closed", "the signalling server closed the connection")
        self.signal_buffer += chunk
        while b"\n" in self.signal_buffer:
            line, self.signal_buffer = self.signal_buffer.split(b"\n", 1)
            message = json.loads(line)
            if "sip" in message:
                if self.attempt_at is None and self.args.role == "callee":
                    self.attempt_at = time.monotonic()
                own = (ADDRESS[self.args.role], SIP_PORT)
                self.bridge.sendto(base64.b64decode(message["sip"]), own)
            elif message.get("ready"):
                self.peer_ready = True
            elif message.get("peer_joined") or message.get("hello") \
                    or message.get("peers") == 2:
                # Lines sent while alone in the room are dropped: say it again.
                self.greet()
            elif message.get("error"):
                raise Failed("signalling-refused", str(message["error"]))

    def read_ctrl(self):
        try:
            chunk = self.ctrl.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            if self.closed is None:
                self.closed = "baresip-exited"
            return
        self.ctrl_buffer += chunk
        while True:
            colon = self.ctrl_buffer.find(b":")
            if colon < 0:
                return
            size = int(self.ctrl_buffer[:colon])
            end = colon + 1 + size
            if len(self.ctrl_buffer) < end + 1:
                return
            message = json.loads(self.ctrl_buffer[colon + 1:end])
            self.ctrl_buffer = self.ctrl_buffer[end + 1:]
            if message.get("event"):
                self.on_event(message)
            elif message.get("response"):
                self.replies.append(message)

    def on_event(self, event):
        kind = event.get("type")
        if kind == "CALL_ESTABLISHED":
            self.established = True
        elif kind == "CALL_CLOSED":
            self.closed = event.get("param") or "closed"
        elif kind == "CALL_RTCP" and isinstance(event.get("rtcp_stats"), dict):
            self.rtcp = event["rtcp_stats"]
            self.rtcp_count += 1

    def sample(self):
        text = self.ask("audio_debug")
        if text:
            received = [int(n) for n in RCVD.findall(text)]
            sent = TX_PACKETS.search(text)
            if received:
                self.received = max(self.received, max(received))
            if sent:
                self.sent = max(self.sent, int(sent.group(1)))

    def wait(self, what, ready, deadline):
        while not ready():
            if self.closed is not None:
                raise Failed("call-closed", f"{self.closed} while waiting for {what}")
            if time.monotonic() >= deadline:
                raise Failed("setup-timeout", f"no {what}")
            self.pump(0.1)

    # -- the call

    def run(self):
        self.connect_signalling()
        self.open_bridge()
        self.start_baresip()
        setup_deadline = self.started + self.args.setup_timeout_s
        if self.args.role == "callee":
            self.greet()
            self.wait("call", lambda: self.established, setup_deadline)
        else:
            self.wait("callee ready", lambda: self.peer_ready, setup_deadline)
            self.attempt_at = time.monotonic()
            self.command("dial", f"sip:callee@{ADDRESS['callee']}:{SIP_PORT}")
            self.wait("answer", lambda: self.established, setup_deadline)
        while self.received == 0:
            if self.closed is not None:
                raise Failed("call-closed", f"{self.closed} before media")
            if time.monotonic() >= setup_deadline:
                raise Failed("setup-timeout", "no audio packet received")
            self.sample()
            self.pump(0.1)
        self.media_at = time.monotonic()
        at_start = self.received
        window_end = self.media_at + self.args.media_s
        while time.monotonic() < window_end and self.closed is None:
            self.pump(0.2)
        if self.closed is not None:
            raise Failed("call-dropped", f"{self.closed} during the media window")
        self.sample()
        self.frames = self.received - at_start + 1
        reports = self.rtcp_count
        rtcp_deadline = time.monotonic() + RTCP_WAIT_S
        while self.rtcp_count == reports and self.closed is None \
                and time.monotonic() < rtcp_deadline:
            self.pump(0.1)
        self.sample()
        if self.args.role == "caller":
            self.command("hangup")
        close_deadline = min(self.budget_at, time.monotonic() + 10)
        while self.closed is None and time.monotonic() < close_deadline:
            self.pump(0.1)

    def finish(self, failure):
        self.sample_quietly()
        if self.baresip is not None:
            try:
                self.command("quit")
            except OSError:
                pass
            try:
                self.baresip.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.baresip.kill()
                self.baresip.wait()
        stats = self.rtcp or {}
        rx = stats.get("rx") or {}
        connected = failure is None and self.media_at is not None
        # baresip's own count of what arrived; the loss from the last RTCP report
        received = self.received or (int(rx.get("sent", 0)) if rx else 0)
        recordings = sorted(self.recordings.glob("dump-*-dec.wav"))
        wav = None
        if recordings:
            wav = self.out / "received.wav"
            shutil.copyfile(recordings[-1], wav)
        result = {
            "connected": connected,
            "setup_s": round(self.media_at - self.attempt_at, 3)
            if self.media_at is not None and self.attempt_at is not None else None,
            "packets_sent": self.sent,
            "packets_received": received,
            "packets_lost": max(0, int(rx.get("lost", 0))) if rx else 0,
            "received_wav": wav.name if wav is not None else None,
            "codec": "opus", "frame_ms": FRAME_MS,
            "frames_received": self.frames if connected else None,
            "jitter_ms": round(int(rx["jit"]) / 1000.0, 2) if rx.get("jit") is not None
            else None,
            "rtt_ms": round(int(stats["rtt"]) / 1000.0, 3) if stats.get("rtt") else None,
            "media_seconds": round(min(time.monotonic(), self.media_at + self.args.media_s)
                                   - self.media_at, 3) if self.media_at is not None else None,
            "error": None if failure is None else failure.error,
            "detail": None if failure is None else failure.detail[:200],
        }
        if not rx and connected:  # no RTCP report: the loss cannot be told, say so
            result["connected"] = False
            result["error"] = "no-rtcp-report"
            result["detail"] = "baresip sent no RTCP report in the call"
        tmp = self.out / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, self.out / "result.json")

    def sample_quietly(self):
        try:
            if self.ctrl is not None and self.closed is None:
                self.sample()
        except (OSError, ValueError):
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", required=True, choices=("caller", "callee"))
    parser.add_argument("--strategy", required=True, choices=("direct", "turn-udp"))
    for name in ("--signalling", "--room", "--stun", "--turn", "--turn-user",
                 "--turn-password", "--audio", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--media-s", type=float, default=6.0)
    parser.add_argument("--setup-timeout-s", type=float, default=15.0)
    args = parser.parse_args()

    def stop(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    side = Side(args)
    failure = None
    try:
        side.run()
        if side.closed not in (None, "closed") and side.args.role == "caller" \
                and side.media_at is None:
            failure = Failed("call-closed", side.closed)
    except Failed as exc:
        failure = exc
    except Stop:
        failure = Failed("terminated", "stopped by SIGTERM")
    except (OSError, ValueError) as exc:
        failure = Failed("internal-error", repr(exc))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    side.finish(failure)
    print(f"baresip_side {args.role}: {'connected' if failure is None else failure}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
