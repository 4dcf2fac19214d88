"""The NFQUEUE binding's wire format (linux/netfilter/nfnetlink_queue.h),
without root: messages are built and parsed as the kernel lays them out."""

from __future__ import annotations

import socket
import struct

from harness.netfilter import nfqueue as nfq


def test_verdict_message_layout() -> None:
    attrs = nfq.attribute(nfq.NFQA_VERDICT_HDR, struct.pack("!II", nfq.NF_ACCEPT, 7))
    attrs += nfq.attribute(nfq.NFQA_MARK, struct.pack("!I", 0xCA000002))
    msg = nfq.message(nfq.NFQNL_MSG_VERDICT, nfq.NLM_F_REQUEST, 1, 100, attrs)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, seq, pid) == (len(msg), (3 << 8) | 1, 1, 1, 0)
    family, version, res_id = struct.unpack_from("!BBH", msg, 16)
    assert (family, version, res_id) == (socket.AF_UNSPEC, 0, 100)
    parsed = nfq.parse_attributes(msg[20:])
    assert struct.unpack("!II", parsed[nfq.NFQA_VERDICT_HDR]) == (nfq.NF_ACCEPT, 7)
    assert struct.unpack("!I", parsed[nfq.NFQA_MARK]) == (0xCA000002,)


def test_attributes_are_padded_to_four_bytes() -> None:
    attr = nfq.attribute(nfq.NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, nfq.NFQNL_COPY_PACKET))
    assert len(attr) == 12 and struct.unpack_from("=H", attr)[0] == 9


def test_packet_attributes_parse_with_flags_stripped() -> None:
    payload = b"\x45" + bytes(27)
    body = (nfq.attribute(nfq.NFQA_PACKET_HDR | 0x4000, struct.pack("!IHB", 42, 0x0800, 2))
            + nfq.attribute(nfq.NFQA_MARK, struct.pack("!I", 0xCA000001))
            + nfq.attribute(nfq.NFQA_IFINDEX_INDEV, struct.pack("!I", 3))
            + nfq.attribute(nfq.NFQA_PAYLOAD, payload))
    packet = nfq.parse_packet(nfq.parse_attributes(body))
    assert packet == nfq.QueuedPacket(42, 0x0800, 2, 0xCA000001, 3, 0, payload)


def test_truncated_attribute_lists_stop_cleanly() -> None:
    body = nfq.attribute(nfq.NFQA_MARK, struct.pack("!I", 1))
    assert nfq.parse_attributes(body[:-2]) == {}
    assert nfq.parse_attributes(body + b"\x40\x00") == {nfq.NFQA_MARK: struct.pack("!I", 1)}
