"""A minimal NFQUEUE binding over nfnetlink, in pure Python.

The censor's userspace stage sees only the first packets of candidate flows,
so a blocking socket and one message at a time are enough; what matters is
that the wire format is right (see linux/netfilter/nfnetlink_queue.h):

    nlmsghdr | nfgenmsg(family, version 0, res_id = queue number, big-endian)
             | attributes (nlattr: u16 length, u16 type, padded to 4 bytes)

Attribute payloads of nfnetlink_queue are big-endian; the netlink headers
are host-endian.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6
NFQA_PAYLOAD = 10

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")  # res_id is big-endian
_NLATTR = struct.Struct("=HH")
_RECV_BUFFER = 1 << 17


class NfqueueError(OSError):
    """The kernel refused a request (e.g. the queue is already bound)."""


@dataclass(frozen=True)
class QueuedPacket:
    """One packet the kernel holds until it gets a verdict. `payload` starts at
    the IP header (the network layer), as NFQUEUE delivers it."""

    packet_id: int
    hw_protocol: int
    hook: int
    mark: int
    in_ifindex: int
    out_ifindex: int
    payload: bytes


def _align(length: int) -> int:
    return (length + 3) & ~3


def attribute(kind: int, value: bytes) -> bytes:
    header = _NLATTR.pack(_NLATTR.size + len(value), kind)
    return (header + value).ljust(_align(_NLATTR.size + len(value)), b"\0")


def parse_attributes(data: bytes) -> dict[int, bytes]:
    """Attributes by type (nested and byte-order flags stripped); later wins."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _NLATTR.size:offset + length]
        offset += _align(length)
    return found


def message(msg_type: int, flags: int, seq: int, queue_num: int, attrs: bytes,
            family: int = socket.AF_UNSPEC) -> bytes:
    body = _NFGENMSG.pack(family, 0, queue_num) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def parse_packet(attrs: dict[int, bytes]) -> QueuedPacket:
    packet_id, hw_protocol, hook = struct.unpack("!IHB", attrs[NFQA_PACKET_HDR][:7])
    return QueuedPacket(
        packet_id=packet_id, hw_protocol=hw_protocol, hook=hook,
        mark=_be32(attrs.get(NFQA_MARK)),
        in_ifindex=_be32(attrs.get(NFQA_IFINDEX_INDEV)),
        out_ifindex=_be32(attrs.get(NFQA_IFINDEX_OUTDEV)),
        payload=attrs.get(NFQA_PAYLOAD, b""),
    )


def _be32(value: bytes | None) -> int:
    return 0 if value is None else int(struct.unpack("!I", value[:4])[0])


class NfQueue:
    """One bound queue in the namespace of the calling process."""

    def __init__(self, queue_num: int, copy_range: int = 0xFFFF, max_len: int = 4096) -> None:
        if not 0 <= queue_num <= 0xFFFF:
            raise ValueError(f"queue number {queue_num} is outside 0-65535")
        self.queue_num = queue_num
        self._seq = 0
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, 0))
        self._pending: list[QueuedPacket] = []
        try:
            self._configure(struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET),
                            NFQA_CFG_CMD)
            self._configure(struct.pack("!IB", copy_range, NFQNL_COPY_PACKET),
                            NFQA_CFG_PARAMS)
            self._configure(struct.pack("!I", max_len), NFQA_CFG_QUEUE_MAXLEN)
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> NfQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        try:
            self._sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST, self._next_seq(),
                                    self.queue_num, attribute(NFQA_CFG_CMD, struct.pack(
                                        "!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_INET))))
        finally:
            self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def packets(self) -> Iterator[QueuedPacket]:
        """Queued packets, forever (or until the socket's timeout raises)."""
        while True:
            yield self.receive()

    def receive(self) -> QueuedPacket:
        while not self._pending:
            self._pending.extend(self._read_packets())
        return self._pending.pop(0)

    def verdict(self, packet_id: int, verdict: int = NF_ACCEPT, mark: int | None = None) -> None:
        """Release (or drop) a packet; with `mark`, the packet leaves with that mark."""
        attrs = attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        if mark is not None:
            attrs += attribute(NFQA_MARK, struct.pack("!I", mark & 0xFFFFFFFF))
        self._sock.send(message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, self._next_seq(),
                                self.queue_num, attrs))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _configure(self, value: bytes, kind: int) -> None:
        seq = self._next_seq()
        self._sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq,
                                self.queue_num, attribute(kind, value)))
        while True:
            for msg_type, msg_seq, body in self._read_messages():
                if msg_type == NLMSG_ERROR and msg_seq == seq:
                    error = -struct.unpack_from("=i", body)[0]
                    if error:
                        raise NfqueueError(error, f"NFQUEUE {self.queue_num}: "
                                                  f"{os.strerror(error)}")
                    return
                if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    self._pending.append(parse_packet(parse_attributes(body[_NFGENMSG.size:])))

    def _read_packets(self) -> list[QueuedPacket]:
        packets = []
        for msg_type, _, body in self._read_messages():
            if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                packets.append(parse_packet(parse_attributes(body[_NFGENMSG.size:])))
            elif msg_type == NLMSG_ERROR:
                error = -struct.unpack_from("=i", body)[0]
                if error:
                    raise NfqueueError(error, f"NFQUEUE {self.queue_num}: {os.strerror(error)}")
        return packets

    def _read_messages(self) -> Iterator[tuple[int, int, bytes]]:
        data = self._sock.recv(_RECV_BUFFER)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, msg_type, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            yield msg_type, seq, data[offset + _NLMSGHDR.size:offset + length]
            offset += _align(length)
