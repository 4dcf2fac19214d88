"""Both ends of a traffic measurement in a running lab: the receiving end is
started (recorded, so teardown stops it), the sending end run to completion,
and both JSON reports returned (or, for one-way delays, an OwdTrace)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.measure.traffic.owd import OwdTrace
from harness.measure.traffic.udp import Signature
from harness.netns.host import LabHost
from harness.netns.network import LabNetwork as Lab
from harness.netns.process import wait_listening

TRAFFIC = [sys.executable, "-m", "harness.measure.traffic"]
READY_S = 5.0
LATE_FACTOR = 1.05  # a sender that ends later than this fell behind its schedule


class TrafficError(RuntimeError):
    pass


@dataclass(frozen=True)
class FlowResult:
    sent: int
    packets: int
    ip_bytes: int
    max_seq: int
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def rate_bytes_per_s(self, after_s: float, until_s: float) -> float:
        """IP bytes per second over arrivals in (after_s, until_s] (seconds
        since the sink started), measured between the first and the last
        arrival inside the window so that idle edges do not count."""
        inside = [(t, b) for t, b in self.arrivals if after_s < t <= until_s]
        if len(inside) < 2:
            return 0.0
        span = inside[-1][0] - inside[0][0]
        # The first packet opens the window; its bytes were earned before it.
        return sum(b for _, b in inside[1:]) / span if span > 0 else 0.0


def _log_dir(lab: Lab) -> Path:
    return lab.registry.files


def _start(lab: Lab, host: str, args: list[str], proto: str, port: int
           ) -> subprocess.Popen[bytes]:
    return _start_on(lab.host(host), args, proto, port, _log_dir(lab) / f"traffic-{host}.log")


def _start_on(host: LabHost, args: list[str], proto: str, port: int, log: Path
              ) -> subprocess.Popen[bytes]:
    proc = host.start([*TRAFFIC, *args], what="traffic", log=log, stdout=subprocess.PIPE)
    if wait_listening(proc.pid, [(proto, port)], READY_S):
        proc.kill()
        proc.wait()
        raise TrafficError(f"traffic {args[0]} in {host.name} did not open {proto}/{port}: "
                           f"see {log}")
    return proc


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or not out.strip():
        raise TrafficError(f"traffic process exited {proc.returncode} with no report")
    result: dict[str, Any] = json.loads(out)
    return result


def _run(lab: Lab, host: str, args: list[str], timeout: float) -> dict[str, Any]:
    result = lab.host(host).run([*TRAFFIC, *args], timeout=timeout)
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _flows(report: dict[str, Any], sent: dict[str, int]) -> dict[int, FlowResult]:
    received = report["flows"]
    results = {}
    for key, count in sent.items():
        tally = received.get(key, {})
        results[int(key)] = FlowResult(
            sent=count, packets=int(tally.get("packets", 0)),
            ip_bytes=int(tally.get("ip_bytes", 0)), max_seq=int(tally.get("max_seq", 0)),
            arrivals=[(float(t), int(b)) for t, b in tally.get("arrivals", [])])
    return results


def _signature_args(signature: Signature | None) -> list[str]:
    if signature is None:
        return []
    args = ["--signature-hex", signature.prefix.hex(), "--signature-at", str(signature.at)]
    if signature.flows:
        args += ["--signature-flows", ",".join(str(f) for f in signature.flows)]
    if signature.every_packet_from:
        args.append("--signature-every")
    if signature.at_by_flow:
        args += ["--signature-at-flows", ",".join(f"{f}:{a}" for f, a in signature.at_by_flow)]
    return args


def udp_upstream(lab: Lab, sender: str, receiver: str, port: int, *, flows: int = 1,
                 pps: float, size: int, seconds: float, signature: Signature | None = None,
                 timeline: bool = False, senders: int = 1, source_port: int = 0,
                 elapsed: list[float] | None = None) -> dict[int, FlowResult]:
    """`flows` UDP flows from `sender` to `receiver`:port (split over
    `senders` processes when one cannot keep up), counted per flow. A
    sender that falls behind its schedule is an error, unless `elapsed` is
    given: then the slowest sender's time is appended to it for the caller
    to judge."""
    address = str(lab.topology.address_of(receiver))
    sink_args = ["udp-sink", "--listen", f"{address}:{port}", "--seconds", str(seconds + 3),
                 "--until-idle", "1.5", *(["--timeline"] if timeline else [])]
    sink = _start(lab, receiver, sink_args, "udp", port)
    try:
        pinned = ["--source-port", str(source_port)] if source_port else []
        sent, slowest = _send_split(lab, sender, f"{address}:{port}", flows, senders, pps,
                                    size, seconds, [*_signature_args(signature), *pinned])
    except BaseException:
        sink.kill()
        raise
    received = _flows(_finish(sink, seconds + 10), sent)
    if elapsed is not None:
        elapsed.append(slowest)
    elif slowest > seconds * LATE_FACTOR:
        raise TrafficError(f"the senders needed {slowest:.2f} s for {seconds:g} s of packets: "
                           "the generator could not keep up (use more sender processes)")
    return received


def _send_split(lab: Lab, sender: str, target: str, flows: int, senders: int, pps: float,
                size: int, seconds: float, extra: list[str]) -> tuple[dict[str, int], float]:
    share = [flows // senders + (i < flows % senders) for i in range(senders)]
    procs = []
    first = 0
    for count in share:
        args = [*TRAFFIC, "udp-send", "--to", target, "--flows", str(count), "--first-flow",
                str(first), "--pps", str(pps), "--size", str(size), "--seconds", str(seconds),
                *extra]
        procs.append(lab.host(sender).start(args, what="traffic",
                                            log=_log_dir(lab) / f"traffic-{sender}.log",
                                            stdout=subprocess.PIPE))
        first += count
    sent: dict[str, int] = {}
    slowest = 0.0
    for proc in procs:
        report = _finish(proc, seconds + 30)
        sent.update(report["sent"])
        slowest = max(slowest, float(report.get("elapsed_s", 0.0)))
    return sent, slowest


def udp_downstream(lab: Lab, server: str, client: str, port: int, *, flows: int = 1,
                   pps: float, size: int, seconds: float,
                   timeline: bool = False) -> dict[int, FlowResult]:
    """`flows` UDP flows that `client` opens (a hello each) and `server`
    then streams into, counted per flow at the client."""
    address = str(lab.topology.address_of(server))
    streamer = _start(lab, server, ["udp-serve", "--listen", f"{address}:{port}", "--flows",
                                    str(flows), "--pps", str(pps), "--size", str(size),
                                    "--seconds", str(seconds)], "udp", port)
    try:
        fetched = _run(lab, client, ["udp-fetch", "--to", f"{address}:{port}", "--flows",
                                     str(flows), "--seconds", str(seconds + 3), "--until-idle",
                                     "1.5", *(["--timeline"] if timeline else [])],
                       timeout=seconds + 20)
    except BaseException:
        streamer.kill()
        raise
    sent = _finish(streamer, 15)["sent"]
    return _flows(fetched, sent)


def tcp_download(lab: Lab, server: str, client: str, port: int, *, total_bytes: int,
                 seconds: float, stall_s: float, hello: bytes = b"") -> dict[str, Any]:
    """A bulk TCP transfer from `server` to `client` (which first sends
    `hello`); the client's report."""
    address = str(lab.topology.address_of(server))
    serving = _start(lab, server, ["tcp-serve", "--listen", f"{address}:{port}", "--bytes",
                                   str(total_bytes), "--seconds", str(seconds + 5),
                                   *(["--await-hello"] if hello else [])], "tcp", port)
    try:
        return _run(lab, client, ["tcp-fetch", "--to", f"{address}:{port}", "--seconds",
                                  str(seconds), "--stall-s", str(stall_s),
                                  "--hello-hex", hello.hex()], timeout=seconds + 15)
    finally:
        try:  # a frozen server blocks in send(): its report is not needed
            serving.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            serving.kill()
            serving.communicate()


def udp_packets(lab: Lab, sender: str, receiver: str, port: int,
                payloads: list[bytes], source_port: int = 0) -> None:
    """Send each payload exactly as given, each as a new flow (or all from
    `source_port`, as one flow)."""
    address = str(lab.topology.address_of(receiver))
    args = ["udp-packet", "--to", f"{address}:{port}", "--source-port", str(source_port)]
    for payload in payloads:
        args += ["--payload-hex", payload.hex()]
    _run(lab, sender, args, timeout=15)


def start_udp_sink(lab: Lab, host: str, port: int, seconds: float,
                   timeline: bool = True) -> subprocess.Popen[bytes]:
    """A sink that counts for `seconds`, for measurements in several phases;
    read it with `finish_udp_sink`."""
    address = str(lab.topology.address_of(host))
    return _start(lab, host, ["udp-sink", "--listen", f"{address}:{port}", "--seconds",
                              str(seconds), *(["--timeline"] if timeline else [])], "udp", port)


def finish_udp_sink(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The sink's report: {"flows": {flow id: tally}}."""
    return _finish(proc, timeout)


def one_way_delays(sender: LabHost, receiver: LabHost, address: str, *, count: int,
                   pps: float, size: int = 200, port: int = 40_400,
                   tail_s: float = 3.0) -> OwdTrace:
    """Send `count` stamped probes from `sender` to `address` (one of
    `receiver`'s) and return what arrived. The receiver is a recorded
    process of the run; it stops `tail_s` after the last packet."""
    base = receiver.registry.files if receiver.registry is not None else Path("/tmp")
    target = f"{address}:{port}"
    listening = _start_on(receiver, ["owd-recv", "--listen", target, "--count", str(count),
                                     "--seconds", str(count / pps + tail_s + 5.0),
                                     "--idle", str(tail_s)],
                          "udp", port, base / f"owd-{receiver.name}.log")
    try:
        sender.run([*TRAFFIC, "owd-send", "--to", target, "--count", str(count),
                    "--pps", str(pps), "--size", str(size)], timeout=count / pps + 30.0)
        report = _finish(listening, count / pps + tail_s + 30.0)
    finally:
        if listening.poll() is None:
            listening.kill()
            listening.wait()
    return OwdTrace.from_json(count, report)
