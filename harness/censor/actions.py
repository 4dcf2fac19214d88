"""What a rule does to the packets it holds, as nft statements (plus, for
`shape`, the HTB classes the statements feed).

- drop / allow: `drop` / `accept`.
- reject: TCP gets a RST (`reject with tcp reset`), everything else an ICMP
  administratively-prohibited (`reject with icmpx admin-prohibited`).
- police: one token bucket per flow and direction (a dynamic set with a
  per-element `limit rate over`); packets over the rate are dropped, never
  queued, as in the IMC'21 model of TSPU throttling. nft's byte-mode bucket
  holds rate + burst bytes, so `burst_bytes` is the bucket's total depth and
  the compiler subtracts the rate.
- shape: `meta priority set 1:N` sends the packets into HTB class 1:N on the
  censor's egress interfaces: queued, not dropped (the contrast to police).
  One class per rule and interface: the rate is shared by all the rule's flows
  in that direction.
- random_loss: `numgen random mod 10000 < P*100` drops P% of the packets.
- blackhole_server: the verdict is the server's address, held for `seconds`;
  every packet to or from it is dropped.
- tcp_freeze: once a TCP flow has carried K kB server to client (`ct reply
  bytes`, which counts IP and TCP headers), every further packet of it is
  dropped, both ways: a silent stall, no RST.
"""

from __future__ import annotations

from harness.spec.policy import Action, Rule

DIRECTED_FLOW_KEY = "ip saddr . th sport . ip daddr . th dport"
SHAPE_CLASS_BASE = 10  # HTB minor ids 1:10, 1:11, ... (1:1 is left for a default)


def action_statements(rule: Rule, buckets_set: str, shape_minor: int | None,
                      l4_pinned: bool) -> list[str]:
    """Statement tails (conditions then verdict) for one enforcing rule; more
    than one when the action depends on the protocol. `l4_pinned`: the
    enforcing expression already fixes the protocol to the rule's."""
    action = rule.action
    kind = action.kind
    if kind in ("drop", "blackhole_server"):
        return ["counter drop"]
    if kind == "allow":
        return ["counter accept"]
    if kind == "reject":
        if l4_pinned and rule.match.protocol == "tcp":
            return ["counter reject with tcp reset"]
        if l4_pinned and rule.match.protocol == "udp":
            return ["counter reject with icmpx admin-prohibited"]
        return ["meta l4proto tcp counter reject with tcp reset",
                "counter reject with icmpx admin-prohibited"]
    if kind == "police":
        rate = police_rate_bytes(action)
        extra = police_bucket_bytes(action) - rate
        return [f"update @{buckets_set} {{ {DIRECTED_FLOW_KEY} limit rate over {rate} "
                f"bytes/second burst {extra} bytes }} counter drop"]
    if kind == "shape":
        assert shape_minor is not None
        return [f"counter meta priority set 1:{shape_minor}"]
    if kind == "random_loss":
        assert action.loss_pct is not None
        return [f"numgen random mod 10000 < {round(action.loss_pct * 100)} counter drop"]
    assert kind == "tcp_freeze" and action.after_kbytes is not None
    return [f"ct reply bytes > {round(action.after_kbytes * 1000)} counter drop"]


def police_rate_bytes(action: Action) -> int:
    assert action.rate_kbit is not None
    return max(1, round(action.rate_kbit * 1000 / 8))


def police_bucket_bytes(action: Action) -> int:
    """The token bucket's depth in bytes.

    nftables' byte-mode limit holds `rate + burst` bytes (one second of rate
    plus the burst), so a bucket can never be shallower than one second at the
    rate. Without `burst_bytes` the depth is that minimum, or two full-size
    packets when the rate is lower still (a guess: no source reports the real
    censor's bucket)."""
    rate = police_rate_bytes(action)
    wanted = action.burst_bytes if action.burst_bytes is not None else 3000
    return max(rate, wanted)


def explain_action(action: Action) -> str:
    kind = action.kind
    if kind == "police":
        return (f"police each flow, each direction, to {action.rate_kbit:g} kbit/s "
                f"(bucket {police_bucket_bytes(action)} B; excess dropped, not queued):")
    if kind == "shape":
        return f"queue (HTB) to {action.rate_kbit:g} kbit/s per direction, shared by"
    if kind == "random_loss":
        return f"drop {action.loss_pct:g}% at random of the"
    if kind == "blackhole_server":
        return f"blackhole for {action.seconds}s the server (every packet to or from it) of"
    if kind == "tcp_freeze":
        return (f"freeze silently, after {action.after_kbytes:g} kB server to client, the "
                "flows of")
    if kind == "reject":
        return "reject (TCP RST, otherwise ICMP admin-prohibited)"
    return "accept" if kind == "allow" else kind
