"""Run one end of a traffic measurement inside a lab host; print JSON.

  udp-send  --to IP:PORT --flows N --pps R --size B --seconds S [signature options]
  udp-packet --to IP:PORT --payload-hex HEX [--payload-hex HEX ...]   (one new flow each)
  udp-sink  --listen IP:PORT --seconds S [--timeline] [--until-idle S]
  udp-serve --listen IP:PORT --flows N --pps R --size B --seconds S   (downstream:
            waits for N hellos, then streams to each hello's sender)
  udp-fetch --to IP:PORT --flows N --seconds S [--timeline]           (says hello
            from N sockets, counts what each receives)
  owd-send  --to IP:PORT --count N --pps R [--size B]             (one stamped flow)
  owd-recv  --listen IP:PORT --count N --seconds S [--idle S]       (every packet's
            one-way delay: see owd.report)
  tcp-serve --listen IP:PORT --bytes B --seconds S
  tcp-fetch --to IP:PORT --seconds S --stall-s T

Pacing is in packets per second of --size UDP payload bytes (a rate of R kbit/s
of payload is R * 1000 / (8 * size) pps). Receivers print "ready" on stderr
once bound.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict

from harness.measure.traffic import owd, tcp, udp
from harness.netns.endpoint import Endpoint

SINK_RCVBUF_BYTES = 1 << 22
OWD_RCVBUF_BYTES = 16 * 1024 * 1024


def _address(text: str) -> tuple[str, int]:
    """IP:PORT through Endpoint.parse, its message as argparse's error."""
    try:
        return Endpoint.parse(text).as_tuple()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _flow_list(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _flow_positions(text: str) -> tuple[tuple[int, int], ...]:
    pairs = [item.split(":") for item in text.split(",") if item]
    return tuple((int(flow), int(at)) for flow, at in pairs)


def _report(tallies: Mapping[int, udp.FlowTally]) -> dict[str, object]:
    return {"flows": {str(k): asdict(v) for k, v in sorted(tallies.items())}}


def _signature(args: argparse.Namespace) -> udp.Signature | None:
    if args.signature_hex is None:
        return None
    return udp.Signature(bytes.fromhex(args.signature_hex), args.signature_at,
                         args.signature_flows, args.signature_every, args.signature_at_flows)


def cmd_udp_send(args: argparse.Namespace) -> Mapping[str, object]:
    pacing = udp.Pacing(args.flows, args.pps, args.size, args.seconds)
    sockets = udp.open_flow_sockets(args.flows, args.source_port)
    started = time.monotonic()
    try:
        sent = udp.paced_send(sockets, [args.to] * args.flows, pacing,
                              udp.filler_builder(_signature(args)), args.first_flow)
    finally:
        for sock in sockets:
            sock.close()
    return {"sent": {str(i + args.first_flow): n for i, n in enumerate(sent)},
            "elapsed_s": round(time.monotonic() - started, 4)}


def cmd_udp_packet(args: argparse.Namespace) -> Mapping[str, object]:
    """Exact payloads, each from a fresh socket (a new flow): crafted packets
    for the classifiers, with no trailer."""
    target = args.to
    if args.source_port:  # one flow, continued across runs
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("0.0.0.0", args.source_port))
            for text in args.payload_hex:
                sock.sendto(bytes.fromhex(text), target)
        return {"sent": len(args.payload_hex)}
    for text in args.payload_hex:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(bytes.fromhex(text), target)
    return {"sent": len(args.payload_hex)}


def cmd_udp_sink(args: argparse.Namespace) -> Mapping[str, object]:
    with udp.open_sink(args.listen, SINK_RCVBUF_BYTES) as sock:
        print("ready", file=sys.stderr, flush=True)
        return _report(udp.receive([sock], args.seconds, timeline=args.timeline,
                                   until_idle_s=args.until_idle).flows)


def cmd_udp_serve(args: argparse.Namespace) -> Mapping[str, object]:
    pacing = udp.Pacing(args.flows, args.pps, args.size, args.seconds)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(args.listen)
        print("ready", file=sys.stderr, flush=True)
        peers = udp.wait_for_hellos(sock, args.flows, args.wait)
        sent = udp.paced_send([sock] * args.flows, list(peers), pacing, udp.filler_builder())
    return {"sent": {str(i): n for i, n in enumerate(sent)}}


def cmd_udp_fetch(args: argparse.Namespace) -> Mapping[str, object]:
    sockets = udp.open_flow_sockets(args.flows)
    target = args.to
    for _ in range(2):  # a lost hello would cost the whole flow
        for sock in sockets:
            sock.sendto(udp.HELLO, target)
    try:
        return _report(udp.receive(sockets, args.seconds, timeline=args.timeline,
                                   by_socket=True, until_idle_s=args.until_idle).flows)
    finally:
        for sock in sockets:
            sock.close()


def cmd_owd_send(args: argparse.Namespace) -> Mapping[str, object]:
    """`count` stamped packets at `pps` on an absolute schedule, each sent as
    soon as it is due (no early slack: a delay probe's spacing is its own)."""
    pacing = udp.Pacing.packets(args.count, args.pps, args.size, stamped=True, slack_s=0.0)
    sockets = udp.open_flow_sockets(1)
    started = time.monotonic()
    try:
        sent = udp.paced_send(sockets, [args.to], pacing, udp.filler_builder())
    finally:
        sockets[0].close()
    return {"sent": sent[0], "seconds": round(time.monotonic() - started, 3)}


def cmd_owd_recv(args: argparse.Namespace) -> Mapping[str, object]:
    """Until --seconds pass, or --idle after the last packet once one came;
    at most 2 × --count packets (duplicates can double them, no more)."""
    with udp.open_sink(args.listen, OWD_RCVBUF_BYTES, stamped=True) as sock:
        print("ready", file=sys.stderr, flush=True)
        return owd.report(udp.receive([sock], args.seconds, until_idle_s=args.idle,
                                      stamped=True, max_packets=2 * args.count))


def cmd_tcp_serve(args: argparse.Namespace) -> Mapping[str, object]:
    print("ready", file=sys.stderr, flush=True)
    return {"sent": tcp.serve_bulk(args.listen, args.bytes, args.seconds,
                                   args.await_hello)}


def cmd_tcp_fetch(args: argparse.Namespace) -> Mapping[str, object]:
    return asdict(tcp.fetch(args.to, args.seconds, args.stall_s,
                            bytes.fromhex(args.hello_hex)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.traffic",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    send = sub.add_parser("udp-send")
    send.add_argument("--to", required=True, type=_address)
    send.add_argument("--first-flow", type=int, default=0)
    send.add_argument("--signature-hex")
    send.add_argument("--signature-at", type=int, default=1)
    send.add_argument("--signature-flows", type=_flow_list, default=())
    send.add_argument("--signature-every", action="store_true",
                      help="the signature on every packet from --signature-at on")
    send.add_argument("--signature-at-flows", type=_flow_positions, default=(),
                      help="per-flow packet numbers, e.g. 0:1,1:2,2:3")
    send.add_argument("--source-port", type=int, default=0,
                      help="first source port (flow i uses it + i); default: any")
    send.set_defaults(run=cmd_udp_send)
    packet = sub.add_parser("udp-packet")
    packet.add_argument("--to", required=True, type=_address)
    packet.add_argument("--payload-hex", action="append", required=True)
    packet.add_argument("--source-port", type=int, default=0,
                        help="send all payloads from this port, as one flow")
    packet.set_defaults(run=cmd_udp_packet)
    serve = sub.add_parser("udp-serve")
    serve.add_argument("--listen", required=True, type=_address)
    serve.add_argument("--wait", type=float, default=10.0)
    serve.set_defaults(run=cmd_udp_serve)
    for p in (send, serve):
        p.add_argument("--flows", type=int, default=1)
        p.add_argument("--pps", type=float, required=True)
        p.add_argument("--size", type=int, default=200, help="UDP payload bytes")
        p.add_argument("--seconds", type=float, required=True)
    sink = sub.add_parser("udp-sink")
    sink.add_argument("--listen", required=True, type=_address)
    sink.set_defaults(run=cmd_udp_sink)
    fetch = sub.add_parser("udp-fetch")
    fetch.add_argument("--to", required=True, type=_address)
    fetch.add_argument("--flows", type=int, default=1)
    fetch.set_defaults(run=cmd_udp_fetch)
    for p in (sink, fetch):
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--timeline", action="store_true")
        p.add_argument("--until-idle", type=float)
    tserve = sub.add_parser("tcp-serve")
    tserve.add_argument("--listen", required=True, type=_address)
    tserve.add_argument("--bytes", type=int, required=True)
    tserve.add_argument("--seconds", type=float, required=True)
    tserve.add_argument("--await-hello", action="store_true",
                        help="send only after the client's first bytes arrive")
    tserve.set_defaults(run=cmd_tcp_serve)
    tfetch = sub.add_parser("tcp-fetch")
    tfetch.add_argument("--to", required=True, type=_address)
    tfetch.add_argument("--seconds", type=float, required=True)
    tfetch.add_argument("--stall-s", type=float, default=1.0)
    tfetch.add_argument("--hello-hex", default="", help="bytes to send first (hex)")
    tfetch.set_defaults(run=cmd_tcp_fetch)
    osend = sub.add_parser("owd-send")
    osend.add_argument("--to", required=True, type=_address)
    osend.add_argument("--count", type=int, required=True)
    osend.add_argument("--pps", type=float, required=True)
    osend.add_argument("--size", type=int, default=200,
                       help=f"UDP payload bytes (at least {udp.STAMPED_MIN_SIZE})")
    osend.set_defaults(run=cmd_owd_send)
    orecv = sub.add_parser("owd-recv")
    orecv.add_argument("--listen", required=True, type=_address)
    orecv.add_argument("--count", type=int, required=True, help="packets the sender sends")
    orecv.add_argument("--seconds", type=float, required=True)
    orecv.add_argument("--idle", type=float, default=1.0,
                       help="stop this long after the last packet (default 1 s)")
    orecv.set_defaults(run=cmd_owd_recv)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print(json.dumps(args.run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
