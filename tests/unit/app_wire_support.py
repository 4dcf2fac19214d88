"""Shared by the app wire-format tests: every censor signature, and which of
them a packet matches, through harness/censor/signatures.py's references."""

from __future__ import annotations

from harness.censor.signatures import matches
from harness.spec.policy import Signature

# One signature of every kind the censor knows (bytes is user-defined: none).
ALL_SIGNATURES: dict[str, Signature] = {
    "stun-cookie": Signature(kind="stun-cookie"),
    "whatsapp-stun": Signature(kind="whatsapp-stun"),
    "telegram-hello": Signature(kind="telegram-hello"),
    "rtp-111": Signature(kind="rtp", payload_types=[111]),
    "rtp-120": Signature(kind="rtp", payload_types=[120]),
    "dtls": Signature(kind="dtls"),
    "wireguard": Signature(kind="wireguard"),
    "quic-v1-initial": Signature(kind="quic-v1-initial"),
    "tls-sni": Signature(kind="tls-sni", names=["telegram.org", "whatsapp.net"]),
}


def matched(payload: bytes, dport: int, l4: str = "udp") -> set[str]:
    """The names in ALL_SIGNATURES whose reference matches this packet."""
    return {name for name, sig in ALL_SIGNATURES.items()
            if matches(sig, payload, l4, dport)}  # type: ignore[arg-type]
