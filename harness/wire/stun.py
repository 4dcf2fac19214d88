"""Plain RFC 5389 Binding, and the TURN Allocate exchange of RFC 5766.

Binding: what the telegram-like profile uses to learn its public address
from the lab's STUN server and to punch and check its P2P path (tgcalls
sends STUN Binding Requests after its reflector hellos, docs/sources.md S16,
S24, S26).

Allocate: tgcalls v2 turns each TURN server Telegram hands it into a
libwebrtc TurnPort (ReflectorRelayPortFactory.cpp: a server whose username
is not "reflector"), whose first Allocate carries REQUESTED-TRANSPORT UDP
(libwebrtc TurnAllocateRequest::Prepare) and, from tgcalls'
TurnCustomizerImpl.cpp, SOFTWARE "Telegram "; the server answers 401 with a
REALM and a NONCE, and the client retries with USERNAME, REALM, NONCE and
MESSAGE-INTEGRITY, the long-term credential of RFC 5389 §10.2 (docs/sources.md
S60). A user's capture shows such Allocates to a Telegram address on UDP
1400 (S18)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.wire.rtp import WireError

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ALLOCATE_REQUEST = 0x0003
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_ERROR = 0x0113
HEADER = struct.Struct("!HHI12s")

# Attributes (RFC 5389 §15, RFC 5766 §14).
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
LIFETIME = 0x000D
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022

UDP_TRANSPORT = struct.pack("!BBH", 17, 0, 0)  # REQUESTED-TRANSPORT: protocol 17, RFFU
INTEGRITY_BYTES = 20


def binding_request(transaction_id: bytes | None = None) -> bytes:
    txid = transaction_id if transaction_id is not None else os.urandom(12)
    return HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, txid)


def xor_address(address: tuple[str, int]) -> bytes:
    """An XOR-MAPPED-ADDRESS (or XOR-RELAYED-ADDRESS) value for an IPv4 address."""
    ip, port = address
    packed = int(ipaddress.IPv4Address(ip)) ^ MAGIC_COOKIE
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC_COOKIE >> 16), packed)


def read_xor_address(value: bytes) -> tuple[str, int] | None:
    if len(value) < 8 or value[1] != 1:
        return None
    port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    ip = struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE
    return str(ipaddress.IPv4Address(ip)), port


def binding_success(transaction_id: bytes, address: tuple[str, int]) -> bytes:
    return message(BINDING_SUCCESS, transaction_id, [(XOR_MAPPED_ADDRESS, xor_address(address))])


def parse(data: bytes) -> tuple[int, bytes, tuple[str, int] | None]:
    """(message type, transaction id, XOR-MAPPED-ADDRESS or None)."""
    decoded = StunMessage.decode(data)
    raw = decoded.get(XOR_MAPPED_ADDRESS)
    return decoded.msg_type, decoded.transaction_id, read_xor_address(raw) if raw else None


def is_stun(data: bytes) -> bool:
    return (len(data) >= HEADER.size and data[0] & 0xC0 == 0
            and struct.unpack_from("!I", data, 4)[0] == MAGIC_COOKIE)


# --------------------------------------------------------------------------- messages


def _attribute(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + b"\x00" * (-len(value) % 4)


def message(msg_type: int, transaction_id: bytes, attributes: Sequence[tuple[int, bytes]],
            integrity_key: bytes | None = None) -> bytes:
    """A STUN message with `attributes` in order, and a MESSAGE-INTEGRITY
    last when `integrity_key` is given (RFC 5389 §15.4: HMAC-SHA1 over the
    message before it, its length field already counting the attribute)."""
    if len(transaction_id) != 12:
        raise WireError("transaction id must be 12 bytes")
    body = b"".join(_attribute(t, v) for t, v in attributes)
    if integrity_key is None:
        return HEADER.pack(msg_type, len(body), MAGIC_COOKIE, transaction_id) + body
    head = HEADER.pack(msg_type, len(body) + 4 + INTEGRITY_BYTES, MAGIC_COOKIE, transaction_id)
    digest = hmac.new(integrity_key, head + body, hashlib.sha1).digest()
    return head + body + _attribute(MESSAGE_INTEGRITY, digest)


@dataclass(frozen=True)
class StunMessage:
    """A decoded STUN message: its type, transaction id and attributes in order."""

    msg_type: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)
    raw: bytes = b""

    @classmethod
    def decode(cls, data: bytes) -> StunMessage:
        if len(data) < HEADER.size:
            raise WireError(f"STUN message of {len(data)} bytes, under {HEADER.size}")
        msg_type, length, cookie, txid = HEADER.unpack_from(data)
        if cookie != MAGIC_COOKIE or msg_type & 0xC000:
            raise WireError("not a STUN message")
        end = min(len(data), HEADER.size + length)
        attrs, offset = [], HEADER.size
        while offset + 4 <= end:
            attr_type, attr_len = struct.unpack_from("!HH", data, offset)
            attrs.append((attr_type, data[offset + 4:offset + 4 + attr_len]))
            offset += 4 + attr_len + (-attr_len % 4)
        return cls(msg_type, txid, tuple(attrs), bytes(data))

    def get(self, attr_type: int) -> bytes | None:
        for found, value in self.attributes:
            if found == attr_type:
                return value
        return None

    def integrity_ok(self, key: bytes) -> bool:
        """Whether its MESSAGE-INTEGRITY is the HMAC-SHA1 of what precedes it."""
        offset = HEADER.size
        while offset + 4 <= len(self.raw):
            attr_type, attr_len = struct.unpack_from("!HH", self.raw, offset)
            if attr_type == MESSAGE_INTEGRITY and attr_len == INTEGRITY_BYTES:
                head = bytearray(self.raw[:HEADER.size])
                struct.pack_into("!H", head, 2, offset + 4 + INTEGRITY_BYTES - HEADER.size)
                expected = hmac.new(key, bytes(head) + self.raw[HEADER.size:offset],
                                    hashlib.sha1).digest()
                return hmac.compare_digest(expected, self.raw[offset + 4:offset + 24])
            offset += 4 + attr_len + (-attr_len % 4)
        return False


# --------------------------------------------------------------------------- TURN Allocate


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 5389 §15.4: MD5(username ":" realm ":" password)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()


@dataclass(frozen=True)
class TurnAuth:
    """What a 401 gave (realm, nonce) and the client's credential."""

    username: str
    password: str
    realm: str
    nonce: bytes

    @property
    def key(self) -> bytes:
        return long_term_key(self.username, self.realm, self.password)


def allocate_request(transaction_id: bytes, software: str | None = None,
                     auth: TurnAuth | None = None) -> bytes:
    """An Allocate request for a UDP relay (RFC 5766 §6.1), in libwebrtc's
    attribute order: REQUESTED-TRANSPORT, then USERNAME, REALM, NONCE when
    authenticated, then SOFTWARE (added by the TURN customizer), then
    MESSAGE-INTEGRITY."""
    attrs: list[tuple[int, bytes]] = [(REQUESTED_TRANSPORT, UDP_TRANSPORT)]
    if auth is not None:
        attrs += [(USERNAME, auth.username.encode()), (REALM, auth.realm.encode()),
                  (NONCE, auth.nonce)]
    if software is not None:
        attrs.append((SOFTWARE, software.encode()))
    return message(ALLOCATE_REQUEST, transaction_id, attrs,
                   auth.key if auth is not None else None)


def error_code(code: int, reason: str) -> bytes:
    """An ERROR-CODE value (RFC 5389 §15.6): class and number, then the reason."""
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def read_error_code(value: bytes | None) -> int | None:
    if value is None or len(value) < 4:
        return None
    return (value[2] & 0x07) * 100 + value[3]


def unauthorized(request: StunMessage, realm: str, nonce: bytes) -> bytes:
    """The 401 a TURN server answers an unauthenticated Allocate with."""
    return message(ALLOCATE_ERROR, request.transaction_id,
                   [(ERROR_CODE, error_code(401, "Unauthorized")), (REALM, realm.encode()),
                    (NONCE, nonce)])


def allocate_success(request: StunMessage, relayed: tuple[str, int], mapped: tuple[str, int],
                     lifetime_s: int, key: bytes) -> bytes:
    return message(ALLOCATE_SUCCESS, request.transaction_id,
                   [(XOR_RELAYED_ADDRESS, xor_address(relayed)),
                    (LIFETIME, struct.pack("!I", lifetime_s)),
                    (XOR_MAPPED_ADDRESS, xor_address(mapped))], key)
