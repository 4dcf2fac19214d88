"""Policy -> CensorPlan. A pure function of the policy, the topology's
bindings and the apply time: no root, no kernel, no I/O.

Everything that nft can express runs in the kernel, in the censor's forward
hook (table inet callwall, replaced whole in one `nft -f` transaction):

- `match` becomes interface, protocol, set and port expressions. `dst_set`
  and `src_set` are the flow's ends as it was opened (`ct original ip daddr`),
  so a rule on flows to a server holds its replies too; `direction` narrows.
- `classify` inspects a flow's first N packets: `ct packets <= N`. We count
  with `ct packets` (both directions), not `ct original packets`, because the
  source of the default N=3, nDPI's MAX_NUM_STUN_PKTS, counts a flow's packets
  in both directions, and because some signatures (a DTLS ServerHello) travel
  in the reply direction. For TCP, N counts from the end of the three-way
  handshake (the compiler adds 3), so that N=1 means the first data packet.
  Conntrack counts a packet before the forward hook sees it: the first packet
  of a flow has `ct packets` 1. `after_packets` K is a trip wire instead
  (`ct packets >= K`), alone or after a signature hit (a "suspect" set).
- A hit records the verdict in a dynamic set keyed by the rule's scope: the
  conntrack tuple (flow: both directions, idle timeout `verdict_s`, refreshed
  by every packet), the server address and protocol (dst-proto) or the server
  address (dst), both with a fixed timeout. Packets from a held server match
  too (`ip saddr`), so downstream traffic is caught.
- `enforcement.probability` rolls once per flow, at the first packet the rule
  sees of it: the roll is remembered in two dynamic sets (rolled, won) keyed
  by the conntrack tuple. Not in a ct mark: a packet dropped in the forward
  hook takes its unconfirmed conntrack entry (and a mark on it) with it, so
  the flow's next packet would roll again and a 30% rule would end up
  enforced on nearly every flow that retries.
- `schedule` adds `meta time` / `meta hour` conditions (harness/censor/schedule.py).
- A signature that looks fields up in a named set (harness/censor/signatures.py
  `SetTest`: a STUN length against the UDP length) gets the set declared once
  in the table, whichever rules use it.
- `classify.ignore` (`ttl_below` N) keeps the packets of the rule's match that
  arrive with a TTL under N out of connection tracking (`notrack`, in a
  prerouting chain at raw priority, before conntrack and before this hop
  decrements the TTL): they are neither counted among a flow's first packets
  nor inspected, by this rule or any other, since every rule reads conntrack.
  The chain matches the rule's sets and ports as a packet in the flow's
  original direction carries them (`ip daddr` for dst_set), which is where
  decoys travel: from the subscriber who opens the flow.
- actions: harness/censor/actions.py.

What nft cannot express (tls-sni: a name at a variable offset) goes to a
userspace NFQUEUE stage: a chain at forward priority -200 marks candidate
packets (`meta mark set`), iptables (mangle FORWARD, -150) queues them to the
stage, the stage sets the rule's verdict mark on a match, and the forward
chain records the verdict and enforces exactly as for a kernel hit. Stage
marks are packet marks (meta mark); nothing here uses conntrack marks.

In allowlist mode, `allow` rules accept; after every rule, replies and related
packets (ICMP errors) of accepted flows pass and everything else is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, collapse_addresses
from typing import Literal

from harness.censor.actions import (
    SHAPE_CLASS_BASE,
    action_statements,
    explain_action,
    police_bucket_bytes,
    police_rate_bytes,
)
from harness.censor.plan import (
    NFT_FAMILY,
    NFT_TABLE,
    CensorBindings,
    CensorPlan,
    HtbClass,
    RuleExplanation,
    TcQdisc,
    UserspaceStage,
)
from harness.censor.schedule import describe_schedule, schedule_conditions
from harness.censor.signatures import L4, classifier, nft_alternatives, nft_sets
from harness.spec.policy import DEFAULT_DENY, Match, Policy, PortRange, Rule
from harness.spec.topology import Topology

__all__ = ["CompileError", "bindings_for", "compile_policy", "explain_rule",
           "police_bucket_bytes", "police_rate_bytes"]

FLOW_KEY_TYPE = "ipv4_addr . inet_service . ipv4_addr . inet_service"
# Orientation-free key: both directions of a conntrack flow map to one element.
CONNTRACK_FLOW_KEY = (
    "ct original ip saddr . ct original proto-src . ct original ip daddr . ct original proto-dst"
)
SERVER_KEY = {"dst-proto": "ct original ip daddr . meta l4proto", "dst": "ct original ip daddr"}
SERVER_KEY_TYPE = {"dst-proto": "ipv4_addr . inet_proto", "dst": "ipv4_addr"}
SERVER_MATCH = {"dst-proto": ("ip daddr . meta l4proto", "ip saddr . meta l4proto"),
                "dst": ("ip daddr", "ip saddr")}
POLICER_IDLE_S = 60
ROLL_MEMORY_S = 3600
DYNAMIC_SET_SIZE = 65535
TCP_HANDSHAKE_PACKETS = 3
STAGE_QUEUE_BASE = 100
MAX_STAGES = 100  # queues 100-199 are the censor's
STAGE_MARK_BASE = 0xCA000000  # packet marks: 0xCA00kk01 candidate, 0xCA00kk02 verdict
PREFILTER_PRIORITY = -200  # before iptables mangle (-150), which queues to the stage
IGNORE_PRIORITY = "raw"  # -300: before conntrack (-200) sees the packet
# A match-only rule (no statement, no counter) whose one job is to keep
# connection tracking on in the censor's namespace under every policy, the
# baseline included. Conntrack starts only when a ruleset needs it: a policy
# swapped in mid-call would otherwise see flows from their middle, and a
# flow whose first tracked packet is a reply gets its directions reversed
# (`ct original` then names the subscriber as the server).
CONNTRACK_ON = "ct state invalid"


class CompileError(ValueError):
    """The policy cannot run on this topology (e.g. it targets an unbound set)."""


def bindings_for(topology: Topology) -> CensorBindings:
    """The censor's view of a topology: its address sets, which of its
    interfaces face the subscribers, and all of its interfaces."""
    name = topology.host_with_role("censor")
    spec = topology.hosts[name].censor
    assert spec is not None, "validated topologies give the censor a censor block"
    subscriber = tuple(topology.interface_owning(name, ip).name for ip in spec.subscriber_side)
    every = tuple(i.name for i in topology.interfaces(name))
    return CensorBindings(sets=topology.sets, subscriber_interfaces=subscriber,
                          all_interfaces=every)


@dataclass
class _Output:
    """What the rules compile to, collected in policy order."""

    sets: list[str] = field(default_factory=list)
    set_names: set[str] = field(default_factory=set)  # signature sets declared so far
    ignore: list[str] = field(default_factory=list)
    prefilter: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    stages: list[UserspaceStage] = field(default_factory=list)
    iptables: list[tuple[str, ...]] = field(default_factory=list)
    shape_classes: list[HtbClass] = field(default_factory=list)


# The allowlist's own counters: its id names them, so decided_by can.
ALLOWLIST_REPLIES = "allowlist-replies"


def compile_policy(policy: Policy, bindings: CensorBindings, now: float | None = None
                   ) -> CensorPlan:
    """`now`: the apply time (seconds since the epoch) that schedules count
    from; by default the clock is read, the only impure step."""
    _check_bindings(policy, bindings)
    apply_time = time.time() if now is None else now
    out = _Output(sets=[_address_set(name, bindings.sets[name]) for name in policy.sets])
    for rule in policy.rules:
        _RuleCompiler(rule, bindings, apply_time, out).compile()
    if policy.mode == "allowlist":
        out.forward += ['ct state established,related counter accept '
                        f'comment "{ALLOWLIST_REPLIES}: replies and related of accepted flows"',
                        f'counter drop comment "{DEFAULT_DENY}: everything not allowed"']
    if len(out.stages) > MAX_STAGES:
        raise CompileError(f"{len(out.stages)} userspace stages; at most {MAX_STAGES}")
    ruleset = _render_table(policy.name, out)
    explanations = tuple(RuleExplanation(r.id, explain_rule(r), _runs_in(r))
                         for r in policy.rules)
    return CensorPlan(policy=policy.name, nft_ruleset=ruleset,
                      tc_ops=_tc_ops(bindings, out.shape_classes), explanations=explanations,
                      stages=tuple(out.stages), iptables_rules=tuple(out.iptables),
                      dns=policy.dns)


class _RuleCompiler:
    def __init__(self, rule: Rule, bindings: CensorBindings, now: float, out: _Output) -> None:
        self.rule = rule
        self.out = out
        self.name = rule.id.replace("-", "_")
        self.match = _match_expression(rule.match, bindings)
        self.bindings = bindings
        self.gate = " ".join(schedule_conditions(rule.schedule, now))
        blackhole = rule.action.kind == "blackhole_server"
        self.scope = "dst" if blackhole else rule.scope
        self.verdict_s = rule.action.seconds if blackhole and rule.action.seconds else \
            rule.verdict_s
        self.l4: L4 | None = None if rule.match.protocol == "any" else rule.match.protocol
        self.shape_minor: int | None = None
        self.holds_state = rule.classify is not None or blackhole

    def compile(self) -> None:
        rule = self.rule
        if rule.action.kind == "shape":
            self.shape_minor = SHAPE_CLASS_BASE + len(self.out.shape_classes)
            assert rule.action.rate_kbit is not None
            self.out.shape_classes.append(HtbClass(f"1:{self.shape_minor}", rule.action.rate_kbit))
        if rule.action.kind == "police":
            self._set(f"buckets_{self.name}", FLOW_KEY_TYPE, POLICER_IDLE_S)
        if rule.probability < 1.0:
            self._roll()
        if not self.holds_state:
            self._emit(f"{self._guarded()}", self._actions(l4_pinned=self.l4 is not None), "")
            return
        self._set(self._state_set, self._state_type, self.verdict_s)
        self._classify()
        self._enforce()

    # ---------------------------------------------------------------- pieces

    def _emit(self, head: str, tails: list[str], what: str) -> None:
        comment = f"{self.rule.id}: {what}" if what else self.rule.id
        for tail in tails:
            self.out.forward.append(_join(head, tail, f'comment "{comment}"'))

    def _set(self, name: str, key_type: str, timeout_s: int) -> None:
        self.out.sets.append(f"set {name} {{\n\ttype {key_type}\n\tflags dynamic, timeout\n"
                             f"\ttimeout {timeout_s}s\n\tsize {DYNAMIC_SET_SIZE}\n}}")

    def _guarded(self) -> str:
        """The rule's match, schedule and (if partial) the flow's roll."""
        won = f"{CONNTRACK_FLOW_KEY} @won_{self.name}" if self.rule.probability < 1 else ""
        return _join(self.match, self.gate, self._flow_proto if won else "", won)

    @property
    def _flow_proto(self) -> str:
        """The protocol a conntrack-tuple key needs (nft reads ports only for a
        known transport): the rule's, or TCP and UDP for protocol any."""
        return f"meta l4proto {self.l4 or '{ tcp, udp }'}"

    def _roll(self) -> None:
        self._set(f"rolled_{self.name}", FLOW_KEY_TYPE, ROLL_MEMORY_S)
        self._set(f"won_{self.name}", FLOW_KEY_TYPE, ROLL_MEMORY_S)
        fresh = _join(self.match, self._flow_proto,
                      f"{CONNTRACK_FLOW_KEY} != @rolled_{self.name}")
        threshold = round(self.rule.probability * 10000)
        self._emit(fresh, [f"numgen random mod 10000 < {threshold} counter "
                           f"add @won_{self.name} {{ {CONNTRACK_FLOW_KEY} }}"], "roll won")
        self._emit(fresh, [f"counter add @rolled_{self.name} {{ {CONNTRACK_FLOW_KEY} }}"],
                   "roll")

    @property
    def _state_set(self) -> str:
        prefix = "flows" if self.scope == "flow" else "servers"
        return f"{prefix}_{self.name}"

    @property
    def _state_type(self) -> str:
        return FLOW_KEY_TYPE if self.scope == "flow" else SERVER_KEY_TYPE[self.scope]

    @property
    def _record(self) -> str:
        if self.scope == "flow":
            return f"update @{self._state_set} {{ {CONNTRACK_FLOW_KEY} }}"
        return f"add @{self._state_set} {{ {SERVER_KEY[self.scope]} }}"

    def _first(self, count: int, at_least: bool = False) -> str:
        offset = TCP_HANDSHAKE_PACKETS if self.l4 == "tcp" else 0
        return f"ct packets {'>=' if at_least else '<='} {count + offset}"

    def _classify(self) -> None:
        classify = self.rule.classify
        if classify is None:  # blackhole_server without classify: the match trips it
            self._emit(self._guarded(), [f"counter {self._record}"], "hold server")
            return
        suspects = classify.after_packets is not None and bool(classify.all_signatures)
        hit = self._record
        if suspects:
            self._set(f"suspects_{self.name}", FLOW_KEY_TYPE, self.rule.verdict_s)
            hit = f"update @suspects_{self.name} {{ {CONNTRACK_FLOW_KEY} }}"
        if classify.ignore is not None:
            self._ignore(classify.ignore.ttl_below)
        for signature in classify.all_signatures:
            cls = classifier(signature, self.l4)
            if cls.in_kernel:
                self._declare(nft_sets(cls))
                head = _join(self._guarded(), self._first(classify.first_packets))
                for pattern in nft_alternatives(cls):
                    self._emit(_join(head, pattern), [f"counter {hit}"],
                               f"classify {signature.kind}")
            else:
                self._stage(signature.kind, signature.names, signature.sni_match, hit)
        if classify.after_packets is not None:
            head = _join(self._guarded(), self._first(classify.after_packets, at_least=True))
            if suspects:
                head = _join(head, f"{CONNTRACK_FLOW_KEY} @suspects_{self.name}")
            self._emit(head, [f"counter {self._record}"], "trip")

    def _declare(self, declarations: list[str]) -> None:
        for declaration in declarations:
            name = declaration.split()[1]
            if name not in self.out.set_names:
                self.out.set_names.add(name)
                self.out.sets.append(declaration)

    def _ignore(self, ttl_below: int) -> None:
        head = _join(_original_direction_match(self.rule.match, self.bindings), self.gate)
        self.out.ignore.append(_join(head, f"ip ttl < {ttl_below} counter notrack",
                                     f'comment "{self.rule.id}: ignore ttl < {ttl_below}"'))

    def _stage(self, kind: str, names: list[str], sni_match: str, hit: str) -> None:
        index = len(self.out.stages)
        candidate = STAGE_MARK_BASE | (index << 8) | 0x01
        verdict = STAGE_MARK_BASE | (index << 8) | 0x02
        assert self.rule.classify is not None
        self.out.prefilter.append(_join(
            self._guarded(), self._first(self.rule.classify.first_packets),
            f"counter meta mark set {candidate:#010x}",
            f'comment "{self.rule.id}: candidate {kind}"'))
        self.out.iptables.append(("-m", "mark", "--mark", f"{candidate:#010x}", "-j", "NFQUEUE",
                                  "--queue-num", str(STAGE_QUEUE_BASE + index),
                                  "--queue-bypass"))
        self.out.stages.append(UserspaceStage(
            rule_id=self.rule.id, queue_num=STAGE_QUEUE_BASE + index, candidate_mark=candidate,
            verdict_mark=verdict, classifier=kind,
            params=(("names", ",".join(names)), ("match", sni_match))))
        self._emit(f"meta mark {verdict:#010x} {self._flow_proto}", [f"counter {hit}"],
                   f"classify {kind} (userspace)")

    def _enforce(self) -> None:
        if self.scope == "flow":
            # The set test first: an interval lookup that spares packets of
            # untargeted flows the hash lookup of the four-part key.
            head = _join(self._flow_proto, _flow_sets(self.rule.match),
                         f"{CONNTRACK_FLOW_KEY} @{self._state_set}", self.gate,
                         f"update @{self._state_set} {{ {CONNTRACK_FLOW_KEY} }}")
            self._emit(head, self._actions(l4_pinned=self.l4 is not None), "enforce")
            return
        pinned = self.scope == "dst-proto" and self.l4 is not None
        for side in SERVER_MATCH[self.scope]:
            head = _join(side, f"@{self._state_set}", self.gate)
            self._emit(head, self._actions(l4_pinned=pinned), "enforce")

    def _actions(self, l4_pinned: bool) -> list[str]:
        return action_statements(self.rule, f"buckets_{self.name}", self.shape_minor, l4_pinned)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _runs_in(rule: Rule) -> Literal["kernel", "userspace"]:
    if rule.classify is not None and any(
            not classifier(s).in_kernel for s in rule.classify.all_signatures):
        return "userspace"
    return "kernel"


def explain_rule(rule: Rule) -> str:
    """One line saying what the rule does, built from the rule itself."""
    text = f"{explain_action(rule.action)} {_explain_match(rule.match)}"
    classify = rule.classify
    if classify is not None:
        kinds = ", ".join(s.kind for s in classify.all_signatures)
        if kinds:
            text += f", whose first {classify.first_packets} packets match {kinds}"
        if classify.after_packets is not None:
            text += f"{' and then' if kinds else ','} reach {classify.after_packets} packets"
        if classify.ignore is not None:
            text += (f", not counting packets that arrive with TTL under "
                     f"{classify.ignore.ttl_below}")
        scope = rule.scope if rule.action.kind != "blackhole_server" else "dst"
        held = {"flow": f"the flow, {rule.verdict_s}s idle",
                "dst-proto": f"the server and protocol, {rule.verdict_s}s",
                "dst": "the server"}[scope]
        text += f" (verdict held for {held})"
    if rule.probability < 1.0:
        text += f"; enforced on {rule.probability:.0%} of flows"
    schedule = describe_schedule(rule.schedule)
    if schedule:
        text += f"; active {schedule}"
    return text


def _check_bindings(policy: Policy, bindings: CensorBindings) -> None:
    for name in policy.sets:
        if name not in bindings.sets:
            raise CompileError(
                f"policy {policy.name!r} targets set {name!r}, which the topology does not bind"
            )
    if not bindings.subscriber_interfaces:
        raise CompileError("the censor has no subscriber-side interface")


def _tc_ops(bindings: CensorBindings, classes: list[HtbClass]) -> tuple[TcQdisc, ...]:
    if not classes:
        return ()
    devices = bindings.all_interfaces or bindings.subscriber_interfaces
    # default 0: packets no rule classifies bypass the classes (HTB's direct queue).
    return tuple(TcQdisc(dev=dev, kind="htb", params=(("default", 0),), classes=tuple(classes))
                 for dev in devices)


def _render_table(policy_name: str, out: _Output) -> str:
    # Declaring, deleting and redeclaring the table in one file makes `nft -f`
    # replace the whole policy in a single atomic transaction.
    body = [f'\tcomment "callwall policy {policy_name}"']
    body += [_indent(s) for s in out.sets]
    if out.ignore:
        body.append("\tchain ignore {")
        body.append(f"\t\ttype filter hook prerouting priority {IGNORE_PRIORITY}; "
                    "policy accept;")
        body += [f"\t\t{line}" for line in out.ignore]
        body.append("\t}")
    if out.prefilter:
        body.append("\tchain prefilter {")
        body.append(f"\t\ttype filter hook forward priority {PREFILTER_PRIORITY}; "
                    "policy accept;")
        body += [f"\t\t{line}" for line in out.prefilter]
        body.append("\t}")
    body.append("\tchain forward {")
    body.append("\t\ttype filter hook forward priority filter; policy accept;")
    body.append(f"\t\t{CONNTRACK_ON}")
    body += [f"\t\t{line}" for line in out.forward]
    body.append("\t}")
    header = f"table {NFT_FAMILY} {NFT_TABLE}"
    return "\n".join([f"{header} {{}}", f"delete table {NFT_FAMILY} {NFT_TABLE}",
                      f"{header} {{", *body, "}", ""])


def _indent(block: str) -> str:
    return "\n".join(f"\t{line}" for line in block.splitlines())


def _address_set(name: str, networks: list[IPv4Network]) -> str:
    # Overlapping or adjacent prefixes are merged here, so the kernel gets
    # disjoint intervals and nft needs no `auto-merge` (which costs a large
    # set tens of milliseconds to load).
    elements = ", ".join(str(n) for n in collapse_addresses(networks))
    return (f"set {_set_name(name)} {{\n\ttype ipv4_addr\n\tflags interval\n"
            f"\telements = {{ {elements} }}\n}}")


def _set_name(topology_set: str) -> str:
    return "set_" + topology_set.replace("-", "_")


def _match_expression(match: Match, bindings: CensorBindings) -> str:
    parts: list[str] = []
    subscriber = _interface_set(bindings.subscriber_interfaces)
    if match.direction == "upstream":
        parts.append(f"iifname {subscriber}")
    elif match.direction == "downstream":
        parts.append(f"oifname {subscriber}")
    if match.protocol != "any":
        parts.append(f"meta l4proto {match.protocol}")
    # Sets name the flow's ends as conntrack saw them open (`ct original`), so a
    # rule on flows to a server also holds the server's replies.
    parts.append(_flow_sets(match))
    if match.src_ports:
        parts.append(f"th sport {_port_set(match.src_ports)}")
    if match.dst_ports:
        parts.append(f"th dport {_port_set(match.dst_ports)}")
    return _join(*parts) or "meta nfproto ipv4"


def _original_direction_match(match: Match, bindings: CensorBindings) -> str:
    """The rule's match on a packet travelling in its flow's original
    direction, without conntrack (for the raw-priority ignore chain)."""
    subscriber = _interface_set(bindings.subscriber_interfaces)
    parts = [{"upstream": f"iifname {subscriber}",
              "downstream": f"iifname != {subscriber}"}.get(match.direction, "")]
    if match.protocol != "any":
        parts.append(f"meta l4proto {match.protocol}")
    if match.src_set:
        parts.append(f"ip saddr @{_set_name(match.src_set)}")
    if match.dst_set:
        parts.append(f"ip daddr @{_set_name(match.dst_set)}")
    if match.src_ports:
        parts.append(f"th sport {_port_set(match.src_ports)}")
    if match.dst_ports:
        parts.append(f"th dport {_port_set(match.dst_ports)}")
    return _join(*parts) or "meta nfproto ipv4"


def _flow_sets(match: Match) -> str:
    """The rule's set conditions, which hold for every packet of a flow they
    held for when it was classified (they test the flow's original ends)."""
    parts = [f"ct original ip saddr @{_set_name(match.src_set)}" if match.src_set else "",
             f"ct original ip daddr @{_set_name(match.dst_set)}" if match.dst_set else ""]
    return _join(*parts)


def _interface_set(names: Iterable[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def _port_set(ports: list[PortRange]) -> str:
    return "{ " + ", ".join(p.render() for p in sorted(set(ports))) + " }"


def _explain_match(match: Match) -> str:
    proto = "all" if match.protocol == "any" else match.protocol.upper()
    text = f"{proto} packets"
    if match.direction != "both":
        text += f" travelling {match.direction}"
    if match.src_set:
        text += f" of flows from set {match.src_set}"
    if match.dst_set:
        text += f" of flows to set {match.dst_set}"
    if match.dst_ports:
        text += " to ports " + ",".join(p.render() for p in match.dst_ports)
    if match.src_ports:
        text += " from ports " + ",".join(p.render() for p in match.src_ports)
    return text
