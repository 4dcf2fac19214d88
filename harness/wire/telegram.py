"""The Telegram-like reflector protocol, as tgcalls and libtgvoip speak it.

Tags (tgcalls v2 ReflectorPort.cpp, docs/sources.md S24, S61): a side's
16-byte peer tag is the first 12 bytes of the tag Telegram hands the call
(the reflector's "password") followed by a random non-zero 4-byte tag of the
side's own (``randomTag_``, copied in host byte order). What a side sends
through the reflector is addressed by the receiver's full tag:

    receiver's tag (16) | sender's 4-byte tag | u32 big-endian length | payload | zeros to 4

(``ReflectorPort::SendTo``); the receiver checks the first 12 bytes of the
tag, reads the sender's tag and the length, and takes the payload
(``HandleIncomingPacket``). A packet whose 12 bytes after the tag are all
0xFF is a special packet (a hello or a reflector's answer), never data.

The hello (tgcalls ``SendReflectorHello``; libtgvoip ``SendUdpPing``, S26):
the sender's tag, 12×FF, FE FF FF FF (libtgvoip writes -1, -1, -1, -2 as
little-endian int32) and 8 bytes: 40 bytes. tgcalls resends it every 500 ms
until the reflector answers, then every 10 s, and writes the constant 123
(big-endian) in the last 8 bytes; libtgvoip sends it as its UDP ping every
0.5 s with a random 64-bit query id there. Ours is libtgvoip's, the query id
little endian.

The reflector's answer is 64 bytes (libtgvoip ``TLID_UDP_REFLECTOR_SELF_INFO``,
parsed in VoIPController.cpp and built by tests/MockReflector.cpp, S62): the
tag, 12×FF, the little-endian TL id 0xc01572c7, a little-endian int32 date,
the query id's 8 bytes as they came, the sender's address as the reflector
saw it (16 bytes, IPv4-mapped IPv6 ::ffff:a.b.c.d) and its port as a
little-endian uint32.

Ours [S]: the call's 12 bytes and each side's 4-byte tag are derived from the
call id (harness.calls.app.telegram_client), where Telegram's server hands out
the first and tgcalls swaps the second in its ICE candidates
("reflector-<id>-<tag>.reflector") over signalling. Media and RTCP through a
reflector are RTP (Opus, payload type 111) and RTCP packets in the data
framing above; on the TCP relay every packet is framed by a big-endian u16
length [S]. Over P2P the same RTP/RTCP packets go bare.
RTCP reports (harness.wire.rtcp) travel like media."""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass

from harness.wire.rtp import WireError

TAG_BYTES = 16
CALL_TAG_BYTES = 12  # what the two sides' tags share, and what a receiver checks
SENDER_TAG_BYTES = 4
SPECIAL_FILL = b"\xff" * 12
HELLO_MAGIC = SPECIAL_FILL + b"\xfe\xff\xff\xff"
HELLO_BYTES = 40
SELF_INFO_TL_ID = 0xC01572C7  # libtgvoip PrivateDefines.h TLID_UDP_REFLECTOR_SELF_INFO
SELF_INFO = struct.Struct("<16s12sIi8s16sI")  # 64 bytes
SELF_INFO_BYTES = SELF_INFO.size
DATA_HEADER = struct.Struct("!4sI")  # after the tag: sender's tag, payload length
DATA_OVERHEAD = TAG_BYTES + DATA_HEADER.size
# The reflector ports of the lab's Telegram relay: tgcalls' default reflector
# port is 599 (ReflectorPort::PrepareAddress); 596-598 are in user captures
# (S16). UDP 1400 is a TURN server's (S18: TURN Allocates to a Telegram
# address on UDP 1400), spoken to as TURN, never with hellos.
REFLECTOR_UDP_PORTS = (599, 598, 597, 596)
TURN_UDP_PORT = 1400
TURN_SOFTWARE = "Telegram "  # tgcalls TurnCustomizerImpl.cpp
TURN_REALM = "telegram.org"  # [S] nDPI labels Telegram calls by a REALM containing "telegram" (S19)
TCP_RELAY_PORT = 443
MEDIA_PAYLOAD_TYPE = 111
MEDIA_SAMPLE_RATE = 48000  # Opus's RTP clock (RFC 7587), whatever the coded rate
FRAME_MS = 60
MIN_BITRATE = 8000  # libtgvoip audio_min_bitrate
MAX_BITRATE = 20000  # libtgvoip audio_max_bitrate
EXTRA_EC_BITRATE = 8000  # libtgvoip UpdateAudioBitrate: 8000 in "shitty internet mode"
# libtgvoip VoIPController.cpp: extra EC (and 8 kbit/s) while the send loss,
# averaged over the last 10 one-second samples, is over the server setting
# packet_loss_for_extra_ec, default 0.02 (S26).
EXTRA_EC_ABOVE_LOSS = 0.02
LOSS_HISTORY = 10
BITRATE_STEP_INCR = 1000  # libtgvoip audio_bitrate_step_incr, bit/s per UpdateAudioBitrate
BITRATE_UPDATE_S = 0.3  # libtgvoip posts UpdateAudioBitrate every 0.3 s
TCP_FRAME = struct.Struct("!H")


def check_tag(tag: bytes) -> bytes:
    if len(tag) != TAG_BYTES:
        raise WireError(f"peer tag must be {TAG_BYTES} bytes, got {len(tag)}")
    return tag


def peer_tag(call_tag: bytes, sender: bytes) -> bytes:
    """A side's tag: the call's first 12 bytes, then the side's own 4 bytes."""
    if len(call_tag) < CALL_TAG_BYTES:
        raise WireError(f"call tag of {len(call_tag)} bytes, under {CALL_TAG_BYTES}")
    if len(sender) != SENDER_TAG_BYTES or sender == b"\x00" * SENDER_TAG_BYTES:
        raise WireError(f"a side's own tag is {SENDER_TAG_BYTES} bytes, not all zero")
    return call_tag[:CALL_TAG_BYTES] + sender


def sender_tag(tag: bytes) -> bytes:
    """The side's own 4 bytes of its tag."""
    return check_tag(tag)[CALL_TAG_BYTES:]


def hello(tag: bytes, query_id: int) -> bytes:
    return check_tag(tag) + HELLO_MAGIC + struct.pack("<Q", query_id & (2**64 - 1))


def is_special(data: bytes) -> bool:
    """A hello, an answer or another reflector request: 12×FF after the tag."""
    return len(data) >= TAG_BYTES + 12 and data[TAG_BYTES:TAG_BYTES + 12] == SPECIAL_FILL


def is_hello(data: bytes) -> bool:
    return len(data) == HELLO_BYTES and data[TAG_BYTES:TAG_BYTES + 16] == HELLO_MAGIC


def query_id(data: bytes) -> int:
    """The query id of a hello, or of the answer to one."""
    if is_hello(data):
        value: int = struct.unpack_from("<Q", data, 32)[0]
        return value
    return parse_self_info(data).query_id


@dataclass(frozen=True)
class SelfInfo:
    """The reflector's answer to a hello: whose tag, when, which query, and the
    sender's address as the reflector saw it."""

    tag: bytes
    date: int
    query_id: int
    address: tuple[str, int]


def self_info(tag: bytes, query: bytes, date: int, address: tuple[str, int]) -> bytes:
    """The 64-byte answer to the hello that carried `tag` and the 8 bytes `query`."""
    if len(query) != 8:
        raise WireError(f"query id must be 8 bytes, got {len(query)}")
    ip, port = address
    mapped = b"\x00" * 10 + b"\xff\xff" + ipaddress.IPv4Address(ip).packed  # ::ffff:a.b.c.d
    return SELF_INFO.pack(check_tag(tag), SPECIAL_FILL, SELF_INFO_TL_ID, date, query, mapped,
                          port & 0xFFFFFFFF)


def is_self_info(data: bytes) -> bool:
    return (len(data) >= SELF_INFO_BYTES and is_special(data)
            and struct.unpack_from("<I", data, 28)[0] == SELF_INFO_TL_ID)


def parse_self_info(data: bytes) -> SelfInfo:
    if not is_self_info(data):
        raise WireError(f"not a {SELF_INFO_BYTES}-byte reflector self-info answer")
    tag, _, _, date, query, mapped, port = SELF_INFO.unpack_from(data)
    ip = str(ipaddress.IPv4Address(mapped[12:]))
    return SelfInfo(tag, date, struct.unpack("<Q", query)[0], (ip, port))


@dataclass(frozen=True)
class DataPacket:
    """A packet through a reflector: to whom (`tag`), from whom (the sender's
    4-byte tag) and what."""

    tag: bytes
    sender: bytes
    payload: bytes

    @property
    def sender_tag(self) -> bytes:
        """The sender's full tag: the call's 12 bytes and its own 4."""
        return self.tag[:CALL_TAG_BYTES] + self.sender


def data(to_tag: bytes, sender: bytes, payload: bytes) -> bytes:
    """`payload` for the side whose tag is `to_tag`, from the side whose own
    4 bytes are `sender` (tgcalls ReflectorPort::SendTo)."""
    if len(sender) != SENDER_TAG_BYTES:
        raise WireError(f"sender tag must be {SENDER_TAG_BYTES} bytes, got {len(sender)}")
    packet = check_tag(to_tag) + DATA_HEADER.pack(sender, len(payload)) + payload
    return packet + b"\x00" * (-len(packet) % 4)


def parse_data(packet: bytes) -> DataPacket:
    """A data packet as tgcalls reads it: over 24 bytes, not special, a length
    that fits (the padding after it is dropped)."""
    if len(packet) <= DATA_OVERHEAD:
        raise WireError(f"reflector data of {len(packet)} bytes, not over {DATA_OVERHEAD}")
    if is_special(packet):
        raise WireError("a special reflector packet, not data")
    sender, length = DATA_HEADER.unpack_from(packet, TAG_BYTES)
    if length > len(packet) - DATA_OVERHEAD:
        raise WireError(f"data length {length} over the {len(packet) - DATA_OVERHEAD} "
                        "bytes that follow")
    return DataPacket(packet[:TAG_BYTES], sender,
                      packet[DATA_OVERHEAD:DATA_OVERHEAD + length])


def split_tag(packet: bytes) -> tuple[bytes, bytes]:
    if len(packet) < TAG_BYTES:
        raise WireError(f"reflector packet of {len(packet)} bytes, under the {TAG_BYTES}-byte tag")
    return packet[:TAG_BYTES], packet[TAG_BYTES:]


def tcp_frame(packet: bytes) -> bytes:
    if len(packet) > 0xFFFF:
        raise WireError(f"TCP frame of {len(packet)} bytes is over 65535")
    return TCP_FRAME.pack(len(packet)) + packet


def turn_password(username: str) -> str:
    """[S] The TURN password of `username` in the lab: Telegram's server hands
    both to the client (phoneConnectionWebrtc, S25); here both sides and the
    reflector derive it, as a TURN REST API secret would."""
    return hashlib.sha256(f"callwall-telegram-turn:{username}".encode()).hexdigest()[:24]
