"""The vocabulary that specs, the matrix and the command line share: call
profiles (which client places the call), strategies (how it tries to get
through) and the two call roles. Defined once here, as enums; the tuples are
their values in declaration order, for argparse choices and messages."""

from __future__ import annotations

from enum import StrEnum


class Profile(StrEnum):
    """Which client places the call: the aiortc WebRTC peer, or a client that
    speaks what research reports of one app's wire format."""

    WEBRTC = "webrtc"
    SIGNAL_LIKE = "signal-like"
    WHATSAPP_LIKE = "whatsapp-like"
    TELEGRAM_LIKE = "telegram-like"
    MAX_LIKE = "max-like"
    BROWSER = "browser"
    BROWSER_AIORTC = "browser-aiortc"
    SIP = "sip"


class Strategy(StrEnum):
    """How a call tries to get through: an ICE strategy of the webrtc client
    (harness.calls.strategies), or a circumvention tool that carries the call
    (harness.tunnels)."""

    DIRECT = "direct"
    TURN_UDP = "turn-udp"
    TURN_TCP = "turn-tcp"
    TURN_TLS_443 = "turn-tls-443"
    WIREGUARD = "wireguard"
    OPENVPN_UDP = "openvpn-udp"
    OPENVPN_TCP = "openvpn-tcp"
    SHADOWSOCKS = "shadowsocks"
    JUNK_OBFUSCATION = "junk-obfuscation"
    SPLIT_ROUTE = "split-route"
    DECOY = "decoy"


class Role(StrEnum):
    """The two ends of a call. The callee starts first, so it is listed first."""

    CALLEE = "callee"
    CALLER = "caller"


PROFILES: tuple[str, ...] = tuple(p.value for p in Profile)
ICE_STRATEGIES: tuple[str, ...] = (Strategy.DIRECT, Strategy.TURN_UDP, Strategy.TURN_TCP,
                                   Strategy.TURN_TLS_443)
TUNNEL_STRATEGIES: tuple[str, ...] = tuple(s.value for s in Strategy if s not in ICE_STRATEGIES)
ALL_STRATEGIES: tuple[str, ...] = tuple(s.value for s in Strategy)
# Which strategies each profile can be placed with: the app-like profiles bring
# their own path ladder, so their plain strategy is `direct`; shadowsocks
# forwards one UDP port to the TURN relay, which only the webrtc client uses.
APP_STRATEGIES: tuple[str, ...] = (Strategy.DIRECT,) + tuple(
    s for s in TUNNEL_STRATEGIES if s != Strategy.SHADOWSOCKS)
PLACEABLE: dict[str, tuple[str, ...]] = {
    p.value: ALL_STRATEGIES if p == Profile.WEBRTC else APP_STRATEGIES for p in Profile}
# max-like's servers are domestic, reached without crossing the censor: a
# tunnel abroad would only carry its traffic away from them, so it is placed
# directly only.
PLACEABLE[Profile.MAX_LIKE.value] = (Strategy.DIRECT,)
# The browser profiles (Chromium) speak the same ICE strategies as the webrtc
# client and ride the same tunnels.
PLACEABLE[Profile.BROWSER.value] = PLACEABLE[Profile.WEBRTC.value]
PLACEABLE[Profile.BROWSER_AIORTC.value] = PLACEABLE[Profile.WEBRTC.value]
# The SIP softphone (baresip 1.0.0) does ICE with STUN, and TURN over UDP only;
# the tunnels carry it like the webrtc client (shadowsocks and split-route a
# TURN-UDP call).
PLACEABLE[Profile.SIP.value] = (Strategy.DIRECT, Strategy.TURN_UDP, Strategy.WIREGUARD,
                                Strategy.OPENVPN_UDP, Strategy.OPENVPN_TCP,
                                Strategy.SHADOWSOCKS, Strategy.JUNK_OBFUSCATION,
                                Strategy.SPLIT_ROUTE)
# Why a profile cannot take a strategy, where the reason is more than "not in its list".
UNPLACEABLE_WHY: dict[tuple[str, str], str] = {
    (Profile.SIP.value, Strategy.TURN_TCP.value):
        "baresip 1.0.0 has no TURN over TCP (added in 2.0; ?transport=tcp is ignored)",
    (Profile.SIP.value, Strategy.TURN_TLS_443.value):
        "baresip 1.0.0 has no TURN over TLS (added in 2.0)",
}


def unplaceable(profile: str, strategy: str) -> str | None:
    """Why `profile` cannot be placed with `strategy`, or None if it can."""
    if profile not in PLACEABLE:
        return f"unknown profile {profile!r}; profiles are: {', '.join(PROFILES)}"
    if strategy not in ALL_STRATEGIES:
        return f"unknown strategy {strategy!r}; strategies are: {', '.join(ALL_STRATEGIES)}"
    if strategy not in PLACEABLE[profile]:
        why = UNPLACEABLE_WHY.get((profile, strategy))
        return (f"profile {profile} cannot be placed with {strategy!r}"
                f"{': ' + why if why else ''}; it takes: "
                f"{', '.join(PLACEABLE[profile])}")
    return None


# Both roles, in the order the harness starts them.
ROLES: tuple[Role, ...] = (Role.CALLEE, Role.CALLER)
# In a matrix's list of policies, it stands for every shipped policy.
ANY = "*"

# One line each, for `callwall list profiles|strategies`.
PROFILE_DESCRIPTIONS: dict[str, str] = {
    "webrtc": "aiortc WebRTC peer: ICE (STUN, TURN), DTLS-SRTP, Opus",
    "signal-like": "Signal-like: aiortc gathering host, STUN and TURN (UDP, TLS 443) at once",
    "whatsapp-like": "WhatsApp-like: STUN-dialect allocate at a UDP relay, relay only, WARP media",
    "telegram-like": "Telegram-like: P2P, then UDP reflectors (596-599; TURN 1400), then TCP 443",
    "max-like": "Max-like (domestic): servers in Russia, UDP relay only, plain RTP",
    "browser": "Chromium (headless) calling Chromium: the webrtc strategies in a browser",
    "browser-aiortc": "Chromium (headless) calling the aiortc peer: browser caller, aiortc callee",
    "sip": "SIP softphone (baresip) via a SIP proxy (kamailio): ICE/STUN or TURN-UDP, Opus",
}
STRATEGY_DESCRIPTIONS: dict[str, str] = {
    "direct": "ICE with host and server-reflexive (STUN) candidates, no relay",
    "turn-udp": "relay-only ICE through TURN over UDP 3478",
    "turn-tcp": "relay-only ICE through TURN over TCP 3478",
    "turn-tls-443": "relay-only ICE through TURN over TLS on 443",
    "wireguard": "tunnel: WireGuard (wireguard-go) to the VPN exit, everything through it",
    "openvpn-udp": "tunnel: OpenVPN over UDP to the VPN exit",
    "openvpn-tcp": "tunnel: OpenVPN over TCP to the VPN exit",
    "shadowsocks": "tunnel: shadowsocks UDP relay carrying TURN-UDP to the relay",
    "junk-obfuscation": "tunnel: WireGuard behind an AmneziaWG-style junk/padding shim",
    "split-route": "tunnel: WireGuard for the relay and STUN prefixes only (TURN-UDP)",
    "decoy": "desync: fake UDP packets with a short TTL before each new flow (TURN-UDP)",
}
