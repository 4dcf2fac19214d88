"""Plain RFC 5389 Binding: what the telegram-like profile uses to learn its
public address from the lab's STUN server and to punch and check its P2P path
(tgcalls sends STUN Binding Requests after its reflector hellos,
docs/sources.md S16, S24, S26)."""

from __future__ import annotations

import ipaddress
import os
import struct

from harness.wire.rtp import WireError

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
HEADER = struct.Struct("!HHI12s")


def binding_request(transaction_id: bytes | None = None) -> bytes:
    txid = transaction_id if transaction_id is not None else os.urandom(12)
    return HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, txid)


def binding_success(transaction_id: bytes, address: tuple[str, int]) -> bytes:
    ip, port = address
    packed = int(ipaddress.IPv4Address(ip)) ^ MAGIC_COOKIE
    value = struct.pack("!BBHI", 0, 1, port ^ (MAGIC_COOKIE >> 16), packed)
    attr = struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value
    return HEADER.pack(BINDING_SUCCESS, len(attr), MAGIC_COOKIE, transaction_id) + attr


def parse(data: bytes) -> tuple[int, bytes, tuple[str, int] | None]:
    """(message type, transaction id, XOR-MAPPED-ADDRESS or None)."""
    if len(data) < HEADER.size:
        raise WireError(f"STUN message of {len(data)} bytes, under {HEADER.size}")
    msg_type, length, cookie, txid = HEADER.unpack_from(data)
    if cookie != MAGIC_COOKIE or msg_type & 0xC000:
        raise WireError("not a STUN message")
    offset, end = HEADER.size, min(len(data), HEADER.size + length)
    mapped = None
    while offset + 4 <= end:
        attr_type, attr_len = struct.unpack_from("!HH", data, offset)
        value = data[offset + 4:offset + 4 + attr_len]
        if attr_type == XOR_MAPPED_ADDRESS and len(value) >= 8 and value[1] == 1:
            port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
            ip = struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE
            mapped = (str(ipaddress.IPv4Address(ip)), port)
        offset += 4 + attr_len + (-attr_len % 4)
    return msg_type, txid, mapped


def is_stun(data: bytes) -> bool:
    return (len(data) >= HEADER.size and data[0] & 0xC0 == 0
            and struct.unpack_from("!I", data, 4)[0] == MAGIC_COOKIE)
