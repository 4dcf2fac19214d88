"""The vocabulary that specs, the matrix and the command line share: call
profiles (which client places the call) and strategies (how it tries to get
through). Defined once here; the modules that implement them import these."""

from __future__ import annotations

# aiortc WebRTC, and clients that speak what research reports of each app's wire format.
PROFILES: tuple[str, ...] = ("webrtc", "signal-like", "whatsapp-like", "telegram-like")
# How the webrtc client gathers candidates (harness.calls.strategies).
ICE_STRATEGIES: tuple[str, ...] = ("direct", "turn-udp", "turn-tcp", "turn-tls-443")
# Circumvention tools that carry a call (harness.tunnels).
TUNNEL_STRATEGIES: tuple[str, ...] = ("wireguard", "openvpn-udp", "openvpn-tcp", "shadowsocks",
                                      "junk-obfuscation", "split-route")
ALL_STRATEGIES: tuple[str, ...] = ICE_STRATEGIES + TUNNEL_STRATEGIES
# In a matrix's list of policies, it stands for every shipped policy.
ANY = "*"
