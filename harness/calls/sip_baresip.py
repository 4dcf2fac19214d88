"""What baresip 1.0.0 says, read into typed values: the netstrings of its
``ctrl_tcp`` interface, the lines it prints (``-v``), and the text of its
``audio_debug`` command. Pure functions and one accumulator
(:class:`BaresipFacts`), so that every format is tested on baresip's own
output.

The figures and where 1.0.0 prints them:

* ``CALL_RTCP`` events (ctrl_tcp) carry ``rtcp_stats`` each time a sender
  report arrives (every 5 s: libre's RTCP_INTERVAL): ``rx.sent`` the RTP
  packets received so far, ``rx.lost`` those lost (expected − received from
  the sequence numbers), ``rx.jit`` the interarrival jitter in µs, ``tx.*``
  what the other side reported of ours, ``rtt`` in µs (RFC 3550 LSR/DLSR; 0
  until a report about our own sender report came back);
* ``audio_debug`` (a ctrl_tcp command) prints the RTCP session live:
  ``rcvd=N`` per remote source and ``TX: packets=N``, and the stream's
  ``local: A, remote: B/C`` addresses;
* the ICE module's state dump (debug level) lists the valid pairs, the
  selected one of each component marked ``*``;
* at the end of a call, ``rtp_stats yes`` prints packets, average bitrates
  and errors per direction, and ``rtcpsummary`` one ``EX=BareSip;...`` line;
* ``sndfile: dumping decode audio to PATH`` says when and where the recording
  of received audio starts: at the audio stream's start, which with ICE is
  when its connectivity checks complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


class NetstringError(ValueError):
    """The ctrl_tcp stream is not a netstring stream."""


class NetstringReader:
    """Netstrings (``LEN:DATA,``) out of a byte stream, fed in pieces."""

    MAX_LEN = 1 << 20

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > 10:
                    raise NetstringError(f"no length prefix in {self._buffer[:20]!r}")
                return out
            head = self._buffer[:colon]
            if not head.isdigit() or int(head) > self.MAX_LEN:
                raise NetstringError(f"bad netstring length {head[:20]!r}")
            size = int(head)
            end = colon + 1 + size
            if len(self._buffer) < end + 1:
                return out
            if self._buffer[end:end + 1] != b",":
                raise NetstringError("netstring not terminated by ','")
            out.append(self._buffer[colon + 1:end])
            self._buffer = self._buffer[end + 1:]


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


def command(name: str, params: str | None = None, token: str | None = None) -> bytes:
    """A ctrl_tcp command as one netstring."""
    body: dict[str, str] = {"command": name}
    if params is not None:
        body["params"] = params
    if token is not None:
        body["token"] = token
    return netstring(json.dumps(body).encode())


def decode_message(payload: bytes) -> dict[str, Any] | None:
    """One ctrl_tcp message (an event or a response), or None if it is not a
    JSON object."""
    try:
        obj = json.loads(payload.decode("utf-8", "replace"))
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


@dataclass(frozen=True)
class RtcpStats:
    """One ``rtcp_stats`` of a CALL_RTCP event, in the event's units (µs)."""

    rx_received: int
    rx_lost: int
    rx_jitter_us: int
    tx_sent: int
    tx_lost: int
    tx_jitter_us: int
    rtt_us: int

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RtcpStats | None:
        stats = event.get("rtcp_stats")
        if not isinstance(stats, Mapping):
            return None
        rx, tx = stats.get("rx"), stats.get("tx")
        if not isinstance(rx, Mapping) or not isinstance(tx, Mapping):
            return None
        try:
            return cls(rx_received=int(rx["sent"]), rx_lost=max(0, int(rx["lost"])),
                       rx_jitter_us=int(rx["jit"]), tx_sent=int(tx["sent"]),
                       tx_lost=max(0, int(tx["lost"])), tx_jitter_us=int(tx["jit"]),
                       rtt_us=int(stats.get("rtt", 0)))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def loss_pct(self) -> float | None:
        expected = self.rx_received + self.rx_lost
        return round(100.0 * self.rx_lost / expected, 2) if expected else None

    @property
    def jitter_ms(self) -> float:
        return round(self.rx_jitter_us / 1000.0, 2)

    @property
    def rtt_ms(self) -> float | None:
        """None when baresip says 0: before a report about our sender report
        has come back, and also after, when the round trip is under the
        millisecond its DLSR is counted in (libre computes A - LSR - DLSR
        with DLSR from a millisecond clock and clamps the result at 0)."""
        return round(self.rtt_us / 1000.0, 3) if self.rtt_us > 0 else None


@dataclass(frozen=True)
class AudioDebug:
    """What one ``audio_debug`` answer says of the RTP session, live."""

    received: int | None
    sent: int | None
    local: str | None
    remote: str | None


_RCVD = re.compile(r"\brcvd=(\d+)")
_TX_PACKETS = re.compile(r"TX: packets=(\d+)")
_LOCAL_REMOTE = re.compile(r"\blocal: (\S+), remote: ([^/\s]+)/")


def parse_audio_debug(text: str) -> AudioDebug:
    received = [int(m) for m in _RCVD.findall(text)]
    sent = _TX_PACKETS.search(text)
    addresses = _LOCAL_REMOTE.search(text)
    return AudioDebug(received=max(received) if received else None,
                      sent=int(sent.group(1)) if sent else None,
                      local=addresses.group(1) if addresses else None,
                      remote=addresses.group(2) if addresses else None)


@dataclass(frozen=True)
class SelectedPair:
    """The pair that carries the audio. ``source`` says how it is known:
    ``ice`` (baresip's ICE dump, the nominated valid pair of component 1) or
    ``turn`` (the TURN media-NAT: our relayed address to the other side's,
    both relay candidates by construction)."""

    local_type: str
    local_address: str
    remote_type: str
    remote_address: str
    source: str
    local_protocol: str = "udp"
    remote_protocol: str = "udp"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "local_type": self.local_type, "local_protocol": self.local_protocol,
            "local_address": self.local_address, "remote_type": self.remote_type,
            "remote_protocol": self.remote_protocol, "remote_address": self.remote_address,
            "local_relay_protocol": "udp" if self.local_type == "relay" else None,
            "source": self.source}
        return out


_TYPES = "|".join(CANDIDATE_TYPES)
_SELECTED = re.compile(
    r"^\s*\*\s+\{comp=1\}\s+\S+\s+\{[^}]*\}\s+(?:[^\s:]+:)?(" + _TYPES + r"):(\S+)"
    r"\s+<--->\s+(" + _TYPES + r"):(\S+)")


def parse_selected(line: str) -> SelectedPair | None:
    """The selected pair of component 1 in a line of baresip's ICE dump, e.g.
    ``*  {comp=1}  Succeeded { VN} eth0:srflx:198.18.0.2:2666 <---> srflx:198.18.4.2:11920``."""
    match = _SELECTED.match(line)
    if match is None:
        return None
    return SelectedPair(local_type=match.group(1), local_address=match.group(2),
                        remote_type=match.group(3), remote_address=match.group(4),
                        source="ice")


@dataclass(frozen=True)
class RtpTotals:
    """``rtp_stats yes``'s block at the end of a stream (whole call)."""

    packets_sent: int
    packets_received: int
    bitrate_sent_kbps: float | None = None
    bitrate_received_kbps: float | None = None
    errors_received: int | None = None


_PACKETS = re.compile(r"^packets:\s+(\d+)\s+(\d+)\s*$")
_BITRATE = re.compile(r"^avg\. bitrate:\s+([\d.]+)\s+([\d.]+)")
_ERRORS = re.compile(r"^errors:\s+(-?\d+)\s+(-?\d+)")
_SUMMARY = re.compile(r"EX=BareSip;(.*)$")
_GATHERED = re.compile(r"call: media-nat '(\w+)' established/gathered")
# A 2xx to the REGISTER, e.g. "callee@198.18.3.2: {0/TCP/v4} 200 OK (kamailio ...)"
# (it may come before the control connection is up, and its event with it).
_REGISTERED = re.compile(r"\{\d+/\w+/v[46]\} 2\d\d ")
# An INVITE accepted (1.0.0 sends no CALL_INCOMING event when it answers by itself).
_INCOMING = "ua: sipsess connect via"
_RECORDING = re.compile(r"sndfile: dumping decode audio to (\S+)")
_PROBLEMS = ("STUN Request failed", "TURN Client error", "gather error",
             "connectivity check failed", "ICE not supported by peer",
             "no remote candidates found", "start_player failed", "aufile: failed",
             "must have sample-rate", "must have channels", "SIP Transport failed",
             "init failed", "Address already in use", "reg: ")


def parse_summary(line: str) -> dict[str, str] | None:
    """rtcpsummary's ``EX=BareSip;CS=0;CD=14;PR=500;...;IP=a,b;`` as a dict."""
    match = _SUMMARY.search(line)
    if match is None:
        return None
    fields = {}
    for part in match.group(1).split(";"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@dataclass
class BaresipFacts:
    """What baresip printed, line by line, with the monotonic time each fact
    was first seen."""

    registered_s: float | None = None
    incoming_s: float | None = None
    gathered_s: float | None = None
    media_nat: str | None = None
    ice_complete_s: float | None = None
    ice_failed: bool = False
    recording_s: float | None = None
    recordings: list[str] = field(default_factory=list)
    selected: SelectedPair | None = None
    totals: RtpTotals | None = None
    summary: dict[str, str] | None = None
    problems: list[str] = field(default_factory=list)
    _packets: tuple[int, int] | None = None

    def feed(self, line: str, now: float) -> None:
        text = line.strip()
        if not text:
            return
        if self.registered_s is None and _REGISTERED.search(text):
            self.registered_s = now
        elif self.incoming_s is None and text.startswith(_INCOMING):
            self.incoming_s = now
        elif self.gathered_s is None and (match := _GATHERED.search(text)):
            self.gathered_s, self.media_nat = now, match.group(1)
        elif "connectivity check is complete" in text and self.ice_complete_s is None:
            self.ice_complete_s = now
        elif match := _RECORDING.search(text):
            if self.recording_s is None:
                self.recording_s = now
            self.recordings.append(match.group(1))
        elif (pair := parse_selected(line)) is not None:
            self.selected = pair
        elif match := _PACKETS.match(text):
            self._packets = (int(match.group(1)), int(match.group(2)))
            self.totals = RtpTotals(*self._packets)
        elif (match := _BITRATE.match(text)) and self.totals is not None:
            self.totals = RtpTotals(self.totals.packets_sent, self.totals.packets_received,
                                    float(match.group(1)), float(match.group(2)))
        elif (match := _ERRORS.match(text)) and self.totals is not None:
            self.totals = RtpTotals(self.totals.packets_sent, self.totals.packets_received,
                                    self.totals.bitrate_sent_kbps,
                                    self.totals.bitrate_received_kbps, int(match.group(2)))
        elif (summary := parse_summary(text)) is not None:
            self.summary = summary
        if "connectivity check failed" in text:
            self.ice_failed = True
        if any(p in text for p in _PROBLEMS) and len(self.problems) < 20:
            self.problems.append(_clean(text)[:200])


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


def split_lines(buffer: bytes) -> tuple[list[str], bytes]:
    """Complete lines (ended by \\n or \\r: baresip redraws its status line
    with \\r) out of `buffer`, ANSI colours removed, and the unfinished rest."""
    parts = re.split(rb"[\r\n]", buffer)
    rest = parts.pop()
    return [_clean(p.decode("utf-8", "replace")) for p in parts], rest
