"""The traffic generators' one UDP scheme (harness.measure.traffic): the
trailer and its stamped form, exact packet counts, the counting and stamped
sinks over loopback, one-way delay traces, and the command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from harness.measure.traffic import udp
from harness.measure.traffic.__main__ import main
from harness.measure.traffic.owd import Arrival, OwdTrace, percentile, report
from harness.wire import stun

TRAFFIC = [sys.executable, "-m", "harness.measure.traffic"]


def test_the_trailer_ends_every_packet_and_the_stamp_sits_before_it() -> None:
    plain = udp.with_trailer(b"\x55" * 40, 3, 7)
    assert len(plain) == 40 and udp.TRAILER.unpack_from(plain, 32) == (3, 7)
    stamped = udp.with_trailer(b"\x55" * 40, 3, 7, sent_ns=123_456_789)
    assert len(stamped) == 40
    assert udp.TRAILER.unpack_from(stamped, 32) == (3, 7)  # any sink still counts it
    assert udp.STAMPED_TRAILER.unpack_from(stamped, 24) == (123_456_789, 3, 7)
    assert stamped[:24] == b"\x55" * 24


def test_too_small_for_the_trailer_is_refused() -> None:
    with pytest.raises(ValueError, match="8-byte trailer"):
        udp.with_trailer(b"1234567", 0, 1)
    with pytest.raises(ValueError, match="16-byte stamped"):
        udp.with_trailer(b"\x00" * 15, 0, 1, sent_ns=1)
    with pytest.raises(ValueError, match="at least 16"):
        udp.Pacing(1, 10, 12, 1.0, stamped=True)
    udp.Pacing(1, 10, 12, 1.0)


def test_a_stun_prefix_after_the_plain_first_packets() -> None:
    """What a probe that turns STUN-looking after N plain packets sends."""
    header = stun.HEADER.pack(stun.BINDING_REQUEST, 180, stun.MAGIC_COOKIE, bytes(12))
    build = udp.filler_builder(udp.Signature(header, at=3, every_packet_from=True))
    looks_stun = [stun.is_stun(build(0, seq, 200)) for seq in range(1, 7)]
    assert looks_stun == [False, False, True, True, True, True]


@pytest.mark.parametrize("count, pps", [(1, 1000), (37, 7000), (300, 3000), (101, 9999.0)])
def test_a_counted_pacing_sends_exactly_count_packets(count: int, pps: float) -> None:
    with udp.open_sink(("127.0.0.1", 0), 1 << 20) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sent = udp.paced_send([sender], [sink.getsockname()], udp.Pacing.packets(count, pps, 64),
                              udp.filler_builder())
        got = udp.receive([sink], 2.0, until_idle_s=0.2)
    assert sent == [count]
    assert got.flows[0].packets == count and got.flows[0].max_seq == count


def test_the_stamped_sink_keeps_every_packet_with_kernel_receive_times() -> None:
    count = 200
    with udp.open_sink(("127.0.0.1", 0), 1 << 20, stamped=True) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        pacing = udp.Pacing.packets(count, 4000, 100, stamped=True, slack_s=0.0)
        udp.paced_send([sender], [sink.getsockname()], pacing, udp.filler_builder())
        got = udp.receive([sink], 3.0, until_idle_s=0.3, stamped=True, max_packets=2 * count)
    assert [a.seq for a in got.arrivals] == list(range(1, count + 1))
    assert got.flows[0].packets == count and got.socket_dropped == 0
    assert all(a.size == 100 for a in got.arrivals)
    delays = [a.delay_ms for a in got.arrivals]
    assert min(delays) >= 0.0  # the kernel stamps after the sender's clock: one clock
    assert percentile(delays, 0.5) < 50.0
    trace = OwdTrace.from_json(count, json.loads(json.dumps(report(got))))
    assert trace.lost() == [] and trace.duplicates() == 0 and trace.arrivals == got.arrivals


def test_a_stamped_sink_stops_at_max_packets() -> None:
    with udp.open_sink(("127.0.0.1", 0), 1 << 20, stamped=True) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for seq in range(1, 11):
            sender.sendto(udp.with_trailer(bytes(32), 0, seq, sent_ns=seq), sink.getsockname())
        started = time.monotonic()
        got = udp.receive([sink], 5.0, stamped=True, max_packets=4)
    assert time.monotonic() - started < 2.0
    assert [a.seq for a in got.arrivals] == [1, 2, 3, 4]


def _trace(sent: int, received: list[int], duplicated: tuple[int, ...] = ()) -> OwdTrace:
    arrivals = [Arrival(seq, seq * 1_000_000, seq * 1_000_000 + 20_000_000, 172)
                for seq in received]
    arrivals += [Arrival(seq, seq * 1_000_000, seq * 1_000_000 + 25_000_000, 172)
                 for seq in duplicated]
    return OwdTrace(sent, arrivals)


def test_the_trace_counts_losses_runs_and_duplicates() -> None:
    trace = _trace(10, [1, 2, 5, 6, 7, 10], duplicated=(6,))
    assert trace.lost() == [3, 4, 8, 9]
    assert trace.duplicates() == 1
    assert trace.delays_ms() == [20.0] * 6  # first copies only
    # runs: delivered 1-2 (cut), lost 3-4, delivered 5-7, lost 8-9, delivered 10 (cut)
    assert trace.runs() == ([2, 2], [3])


def test_the_trace_rate_is_ip_bits_between_first_and_last_arrival() -> None:
    trace = _trace(11, list(range(1, 12)))  # one per ms, 200 IP bytes each
    assert trace.receive_rate_bps() == pytest.approx(10 * 200 * 8 / 0.010)
    assert _trace(3, [2]).receive_rate_bps() == 0.0


def test_a_bad_endpoint_is_named_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["udp-sink", "--listen", "10.0.0.1", "--seconds", "1"])
    assert exit_info.value.code == 2
    assert "argument --listen: expected IP:PORT, got '10.0.0.1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["owd-send", "--to", "10.0.0.1:99999", "--count", "1", "--pps", "1"])
    assert "port 1-65535" in capsys.readouterr().err


def test_owd_send_and_recv_over_loopback() -> None:
    """The two commands as lab hosts run them: the receiver's report is what
    OwdTrace reads."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = subprocess.Popen([*TRAFFIC, "owd-recv", "--listen", f"127.0.0.1:{port}",
                                 "--count", "100", "--seconds", "20", "--idle", "0.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert receiver.stderr is not None and receiver.stderr.readline() == b"ready\n"
        sent = subprocess.run([*TRAFFIC, "owd-send", "--to", f"127.0.0.1:{port}", "--count",
                               "100", "--pps", "1000", "--size", "120"],
                              capture_output=True, text=True, timeout=20, check=True)
        out, _ = receiver.communicate(timeout=20)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert json.loads(sent.stdout)["sent"] == 100
    trace = OwdTrace.from_json(100, json.loads(out))
    assert trace.lost() == [] and trace.receiver_dropped == 0
    assert {a.size for a in trace.arrivals} == {120}
