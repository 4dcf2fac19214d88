"""Policy → CensorPlan. A pure function: no root, no kernel, no I/O.

Every rule runs in the kernel (nftables, forward hook of the censor host):
- `match` becomes interface, protocol, set and port expressions;
- `classify` inspects the first N packets of a conntrack flow (`ct packets`),
  and a hit adds the flow to a dynamic set whose elements carry the verdict
  for `verdict_idle_s` after the flow's last packet;
- `police` keeps one token bucket per flow and direction (a dynamic set with
  per-element `limit rate over`): packets over the rate are dropped, never
  queued, as in the IMC'21 model of TSPU throttling.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network

from harness.censor.plan import (
    NFT_FAMILY,
    NFT_TABLE,
    CensorBindings,
    CensorPlan,
    RuleExplanation,
)
from harness.spec.policy import Action, Match, Policy, PortRange, Rule
from harness.spec.topology import Topology

STUN_MAGIC_COOKIE = 0x2112A442
# The cookie sits 4 bytes into the STUN header, i.e. 8 + 4 bytes after the
# start of the UDP header: bit offset 96 from the transport header.
STUN_COOKIE_BIT_OFFSET = 96
FLOW_KEY_TYPE = "ipv4_addr . inet_service . ipv4_addr . inet_service"
# Orientation-free key: both directions of a conntrack flow map to one element.
CONNTRACK_FLOW_KEY = (
    "ct original ip saddr . ct original proto-src . ct original ip daddr . ct original proto-dst"
)
# Directed key: each direction of a flow gets its own token bucket.
DIRECTED_FLOW_KEY = "ip saddr . th sport . ip daddr . th dport"
POLICER_IDLE_S = 60
DYNAMIC_SET_SIZE = 65535


class CompileError(ValueError):
    """The policy cannot run on this topology (e.g. it targets an unbound set)."""


def bindings_for(topology: Topology) -> CensorBindings:
    """The censor's view of a topology: its address sets and which of its
    interfaces face the subscribers."""
    name = topology.host_with_role("censor")
    spec = topology.hosts[name].censor
    assert spec is not None, "validated topologies give the censor a censor block"
    subscriber = tuple(topology.interface_owning(name, ip).name for ip in spec.subscriber_side)
    return CensorBindings(sets=topology.sets, subscriber_interfaces=subscriber)


def compile_policy(policy: Policy, bindings: CensorBindings) -> CensorPlan:
    _check_bindings(policy, bindings)
    sets = [_address_set(name, bindings.sets[name]) for name in policy.sets]
    state_sets: list[str] = []
    rule_lines: list[str] = []
    for rule in policy.rules:
        state_sets += _state_sets(rule)
        rule_lines += _rule_statements(rule, bindings)
    ruleset = _render_table(policy.name, sets + state_sets, rule_lines)
    explanations = tuple(RuleExplanation(r.id, explain_rule(r)) for r in policy.rules)
    return CensorPlan(policy=policy.name, nft_ruleset=ruleset, explanations=explanations)


def explain_rule(rule: Rule) -> str:
    """One line saying what the rule does, built from the rule itself."""
    what = _explain_match(rule.match)
    if rule.classify is not None:
        what += (f", whose first {rule.classify.first_packets} packets carry the STUN magic "
                 f"cookie (verdict kept per flow for {rule.verdict_idle_s}s idle)")
    return f"{_explain_action(rule.action)} {what}"


def _check_bindings(policy: Policy, bindings: CensorBindings) -> None:
    for name in policy.sets:
        if name not in bindings.sets:
            raise CompileError(
                f"policy {policy.name!r} targets set {name!r}, which the topology does not bind"
            )
    if not bindings.subscriber_interfaces:
        raise CompileError("the censor has no subscriber-side interface")


def _render_table(policy_name: str, sets: list[str], rules: list[str]) -> str:
    # Declaring, deleting and redeclaring the table in one file makes `nft -f`
    # replace the whole policy in a single atomic transaction.
    body = [f'\tcomment "callwall policy {policy_name}"']
    body += [_indent(s) for s in sets]
    body.append("\tchain forward {")
    body.append("\t\ttype filter hook forward priority filter; policy accept;")
    body += [f"\t\t{line}" for line in rules]
    body.append("\t}")
    header = f"table {NFT_FAMILY} {NFT_TABLE}"
    return "\n".join([f"{header} {{}}", f"delete table {NFT_FAMILY} {NFT_TABLE}",
                      f"{header} {{", *body, "}", ""])


def _indent(block: str) -> str:
    return "\n".join(f"\t{line}" for line in block.splitlines())


def _address_set(name: str, networks: list[IPv4Network]) -> str:
    elements = ", ".join(str(n) for n in networks)
    return (f"set {_set_name(name)} {{\n\ttype ipv4_addr\n\tflags interval\n"
            f"\telements = {{ {elements} }}\n}}")


def _set_name(topology_set: str) -> str:
    return "set_" + topology_set.replace("-", "_")


def _flows_set(rule: Rule) -> str:
    return "flows_" + rule.id.replace("-", "_")


def _buckets_set(rule: Rule) -> str:
    return "buckets_" + rule.id.replace("-", "_")


def _state_sets(rule: Rule) -> list[str]:
    sets = []
    if rule.classify is not None:
        sets.append(_dynamic_set(_flows_set(rule), rule.verdict_idle_s))
    if rule.action.kind == "police":
        sets.append(_dynamic_set(_buckets_set(rule), POLICER_IDLE_S))
    return sets


def _dynamic_set(name: str, timeout_s: int) -> str:
    return (f"set {name} {{\n\ttype {FLOW_KEY_TYPE}\n\tflags dynamic, timeout\n"
            f"\ttimeout {timeout_s}s\n\tsize {DYNAMIC_SET_SIZE}\n}}")


def _rule_statements(rule: Rule, bindings: CensorBindings) -> list[str]:
    match = _match_expression(rule.match, bindings)
    action = _action_statement(rule)
    if rule.classify is None:
        return [f'{match} {action} comment "{rule.id}"']
    flows = _flows_set(rule)
    classify = (f"{match} ct packets <= {rule.classify.first_packets} "
                f"@th,{STUN_COOKIE_BIT_OFFSET},32 {STUN_MAGIC_COOKIE:#010x} "
                f"counter add @{flows} {{ {CONNTRACK_FLOW_KEY} }} "
                f'comment "{rule.id}: classify"')
    # The verdict covers the whole flow, both directions, whatever its packets carry.
    enforce = (f"meta l4proto {rule.match.protocol} {CONNTRACK_FLOW_KEY} @{flows} "
               f"update @{flows} {{ {CONNTRACK_FLOW_KEY} }} {action} "
               f'comment "{rule.id}: enforce"')
    return [classify, enforce]


def _match_expression(match: Match, bindings: CensorBindings) -> str:
    parts: list[str] = []
    subscriber = _interface_set(bindings.subscriber_interfaces)
    if match.direction == "upstream":
        parts.append(f"iifname {subscriber}")
    elif match.direction == "downstream":
        parts.append(f"oifname {subscriber}")
    if match.protocol != "any":
        parts.append(f"meta l4proto {match.protocol}")
    if match.src_set is not None:
        parts.append(f"ip saddr @{_set_name(match.src_set)}")
    if match.dst_set is not None:
        parts.append(f"ip daddr @{_set_name(match.dst_set)}")
    if match.src_ports:
        parts.append(f"th sport {_port_set(match.src_ports)}")
    if match.dst_ports:
        parts.append(f"th dport {_port_set(match.dst_ports)}")
    return " ".join(parts) if parts else "meta nfproto ipv4"


def _interface_set(names: Iterable[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def _port_set(ports: list[PortRange]) -> str:
    return "{ " + ", ".join(p.render() for p in sorted(set(ports))) + " }"


def _action_statement(rule: Rule) -> str:
    action = rule.action
    if action.kind == "drop":
        return "counter drop"
    rate = police_rate_bytes(action)
    extra = police_bucket_bytes(action) - rate
    return (f"update @{_buckets_set(rule)} {{ {DIRECTED_FLOW_KEY} limit rate over "
            f"{rate} bytes/second burst {extra} bytes }} counter drop")


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


def _explain_match(match: Match) -> str:
    proto = "all" if match.protocol == "any" else match.protocol.upper()
    text = f"{proto} packets"
    if match.direction != "both":
        text += f" travelling {match.direction}"
    if match.src_set:
        text += f" from set {match.src_set}"
    if match.dst_set:
        text += f" to set {match.dst_set}"
    if match.dst_ports:
        text += " to ports " + ",".join(p.render() for p in match.dst_ports)
    if match.src_ports:
        text += " from ports " + ",".join(p.render() for p in match.src_ports)
    return text


def _explain_action(action: Action) -> str:
    if action.kind == "drop":
        return "drop"
    return (f"police each flow, each direction, to {action.rate_kbit:g} kbit/s "
            f"(bucket {police_bucket_bytes(action)} B; excess dropped, not queued):")
