"""Reading what baresip 1.0.0 says (harness.calls.sip_baresip), on its own
output: lines and ctrl_tcp messages copied from real lab calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.calls.sip_baresip import (
    BaresipFacts,
    NetstringError,
    NetstringReader,
    RtcpStats,
    command,
    decode_message,
    netstring,
    parse_audio_debug,
    parse_selected,
    parse_summary,
    split_lines,
)

# A caller's baresip -v output around ICE completion and the end of a call.
CALLER_LINES = """\
baresip is ready.
call: media-nat 'ice' established/gathered
call: SIP Progress: 180 Ringing (/)
EX=BareSip;ERROR=No RTCP stats collected;
call: media-nat 'ice' established/gathered
ice: audio: connectivity check is complete (update=1)
 Valid list:  (4)
  *  {comp=1}  Succeeded { VN} eth0:srflx:198.18.0.2:25208 <---> srflx:198.18.4.2:40230
     {comp=1}  Succeeded { V } eth0:host:100.64.1.2:25208 <---> srflx:198.18.4.2:40230
  *  {comp=2}  Succeeded { VN} eth0:srflx:198.18.0.2:25209 <---> srflx:198.18.4.2:40231
sndfile: dumping encode audio to /tmp/x/caller-recordings/dump-2026-12-03-13-53-43-enc.wav
sndfile: dumping decode audio to /tmp/x/caller-recordings/dump-2026-12-03-13-53-43-dec.wav
EX=BareSip;CS=0;CD=15;PR=499;PS=498;PL=0,0;PD=0,0;JI=1.2,1.5;DL=0.0;IP=198.18.0.2:25208,198.18.4.2:40230;
audio           Transmit:     Receive:
packets:            500          501
avg. bitrate:      38.1         38.2  (kbit/s)
errors:               0            0
pkt.report:         498          499
"""

# An `audio_debug` answer's data during a call (ctrl_tcp response, JSON-decoded).
AUDIO_DEBUG = (
    "\n--- Audio stream ---\n tx:   encode: opus 48000Hz/1ch ptime=20ms S16LE\n"
    "       source: aufile,/run/x/sip-reference-speech-x6.wav S16LE\n"
    " audio dir=sendrecv pt_enc=96\n"
    " local: 198.18.0.2:25208, remote: 198.18.4.2:40230/198.18.4.2:40231\n"
    " mnat: ice (connected=yes)\n menc: (none) (secure=no)\nRTP debug:\n"
    " Encode: seq=21392 ssrc=0x1912604e\n----- RTCP Session: -----\n"
    "  cname=sip:caller@198.18.3.2 SSRC=0x1912604e/420634702 rx=48000Hz\n"
    "  member 0xbe13252d: lost=0 Jitter=0.0ms RTT=0.0ms\n"
    "                 IP=198.18.4.2:40230 psent=0 rcvd=152\n"
    "  TX: packets=151, octets=3\n")

RTCP_STATS: dict[str, Any] = {"tx": {"sent": 498, "lost": 0, "jit": 1541},
                               "rx": {"sent": 490, "lost": 10, "jit": 1250}, "rtt": 382}
RTCP_EVENT: dict[str, Any] = {"event": True, "type": "CALL_RTCP", "class": "call", "param": "audio",
              "rtcp_stats": RTCP_STATS}


def test_netstrings_come_out_whole_however_the_bytes_are_split() -> None:
    messages = [json.dumps({"event": True, "type": t}).encode() for t in ("A", "BB", "CCC")]
    stream = b"".join(netstring(m) for m in messages)
    reader = NetstringReader()
    got = []
    for i in range(0, len(stream), 7):
        got += reader.feed(stream[i:i + 7])
    assert got == messages


@pytest.mark.parametrize("bad", [b"x12:abc", b"3:abcd", b"99999999:"])
def test_a_broken_netstring_stream_is_an_error(bad: bytes) -> None:
    with pytest.raises(NetstringError):
        NetstringReader().feed(bad)


def test_a_command_is_the_json_ctrl_tcp_takes() -> None:
    (payload,) = NetstringReader().feed(command("dial", "sip:callee@198.18.3.2", "t1"))
    assert decode_message(payload) == {"command": "dial", "params": "sip:callee@198.18.3.2",
                                       "token": "t1"}
    assert decode_message(b"[1, 2]") is None and decode_message(b"{not json") is None


def test_rtcp_stats_give_this_sides_reception() -> None:
    stats = RtcpStats.from_event(RTCP_EVENT)
    assert stats is not None
    assert stats.loss_pct == 2.0  # 10 lost of 500 expected
    assert stats.jitter_ms == 1.25 and stats.rtt_ms == 0.382
    zero = RtcpStats.from_event({**RTCP_EVENT, "rtcp_stats": {**RTCP_STATS, "rtt": 0}})
    assert zero is not None and zero.rtt_ms is None
    assert RtcpStats.from_event({"type": "CALL_RTCP"}) is None
    assert RtcpStats.from_event({"rtcp_stats": {"tx": {}, "rx": {}}}) is None


def test_the_selected_pair_is_the_starred_one_of_component_1() -> None:
    lines = CALLER_LINES.splitlines()
    pairs = [parse_selected(line) for line in lines]
    found = [p for p in pairs if p is not None]
    assert len(found) == 1
    assert (found[0].local_type, found[0].local_address) == ("srflx", "198.18.0.2:25208")
    assert (found[0].remote_type, found[0].remote_address) == ("srflx", "198.18.4.2:40230")
    assert found[0].to_dict()["local_relay_protocol"] is None


def test_the_facts_of_a_call_from_its_lines() -> None:
    facts = BaresipFacts()
    for n, line in enumerate(CALLER_LINES.splitlines()):
        facts.feed(line, float(n))
    assert facts.gathered_s == 1.0 and facts.media_nat == "ice"
    assert facts.ice_complete_s == 5.0
    assert facts.recording_s == 11.0 and facts.recordings[0].endswith("-dec.wav")
    assert facts.selected is not None and facts.selected.source == "ice"
    assert facts.totals is not None
    assert (facts.totals.packets_sent, facts.totals.packets_received) == (500, 501)
    assert facts.totals.bitrate_received_kbps == 38.2 and facts.totals.errors_received == 0
    # The last summary wins (the first was of a dial the proxy turned away).
    assert facts.summary is not None and facts.summary["PR"] == "499"
    assert facts.problems == []


def test_gathering_problems_are_kept() -> None:
    facts = BaresipFacts()
    for line in ("\x1b[31mice: comp 1: STUN Request failed: Connection timed out",
                 "\x1b[;mice: gather error: Connection timed out (0 )",
                 "callee@198.18.3.2: {0/TCP/v4} 200 OK (kamailio (5.6.3)) [1 binding]",
                 "ua: sipsess connect via TCP 198.18.3.2:5060 --> 192.0.2.10:33296"):
        (clean,), _ = split_lines(line.encode() + b"\n")
        facts.feed(clean, 1.0)
    assert facts.problems == ["ice: comp 1: STUN Request failed: Connection timed out",
                              "ice: gather error: Connection timed out (0 )"]
    assert facts.registered_s == 1.0 and facts.incoming_s == 1.0


def test_status_line_redraws_split_like_lines() -> None:
    lines, rest = split_lines(b"[0:00:01] audio=1/2 (bit/s)\r[0:00:02] audio=3/4\npartial")
    assert lines == ["[0:00:01] audio=1/2 (bit/s)", "[0:00:02] audio=3/4"]
    assert rest == b"partial"


def test_audio_debug_gives_live_counters_and_addresses() -> None:
    parsed = parse_audio_debug(AUDIO_DEBUG)
    assert (parsed.received, parsed.sent) == (152, 151)
    assert (parsed.local, parsed.remote) == ("198.18.0.2:25208", "198.18.4.2:40230")
    assert parse_audio_debug("no call").received is None


def test_summary_line() -> None:
    summary = parse_summary("EX=BareSip;CS=0;CD=15;JI=1.2,1.5;IP=198.18.0.2:1,198.18.4.2:2;")
    assert summary == {"CS": "0", "CD": "15", "JI": "1.2,1.5", "IP": "198.18.0.2:1,198.18.4.2:2"}
    assert parse_summary("something else") is None
