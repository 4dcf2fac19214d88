"""Policy specs: what the censor does to which packets, why we believe the real
censor does it (provenance), and what each call strategy should then see.

A rule has six parts: `match` (which packets), `classify` (deep inspection of a
flow's first packets, or a packet-count trip wire), `scope` (what a verdict
covers: the flow, the server and protocol, or the server), `action`,
`enforcement` (a per-flow probability) and `schedule` (when the rule is
active). A policy may `include` others and `override` their rules' parameters
(ISP profiles). Targets are symbolic sets (`relays`, ...) that the topology
binds to addresses; real-world prefixes belong in the provenance text only.

    mode: blocklist                      # or allowlist: unlisted traffic dropped
    include: [rkn-2025-calls]            # policies/<name>.yaml, or a path.yaml
    override: {stun-to-relays: {first_packets: 5, verdict_s: 600}}
    rules:
      - id: sni-throttle
        explain: one line for people
        match: {protocol: tcp, direction: both, dst_set: relays, dst_ports: ['443']}
        classify:                         # the first N packets, and/or a trip wire
          first_packets: 3
          signatures: [{kind: tls-sni, names: [twitter.com], sni_match: suffix}]
          ignore: {ttl_below: 10}         # packets the DPI does not see (decoys)
        scope: flow                       # flow | dst-proto | dst
        verdict_s: 600                    # idle for flow, fixed for server scopes
        action: {kind: police, rate_kbit: 140}
        enforcement: {probability: 0.5}   # rolled once per flow
        schedule: {after_s: 60, on_s: 600, off_s: 600}

A policy may also take names out of the national DNS: the subscribers'
resolver (harness.services.resolver) answers NXDOMAIN for them while the
policy is loaded (harness/censor/dns.py), and `id` names that removal in
`decided_by`, where it counts the NXDOMAIN answers it gave:

    dns: {id: nsdi-whatsapp, explain: one line, remove: [wa-chat.lab, wa-relay.lab]}

Signature kinds and their sources: harness/censor/signatures.py; what each
part compiles to: harness/censor/compiler.py and actions.py.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.spec.descriptor import profiles, strategies
from harness.spec.schema import (
    Located,
    check_name,
    locate,
    register_scalar,
    shorten,
)

MAX_RULES = 200
PORT_RANGE = re.compile(r"\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?", re.ASCII)
HEX_BYTES = re.compile(r"(?:[0-9a-fA-F]{2})+", re.ASCII)
SNI_NAME = re.compile(r"\.?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.?", re.ASCII)
# The largest transport payload a packet can carry on the lab's 1500-byte links
# (IPv4 without options): offsets beyond it can never match.
MAX_UDP_PAYLOAD = 1500 - 20 - 8
MAX_TCP_PAYLOAD = 1500 - 20 - 20
MAX_MATCH_BYTES = 16
DAY_S = 86_400
MIN_PERIOD_S = 20
MAX_PROBABILISTIC_RULES = 16  # two roll sets each

SignatureKind = Literal["stun-cookie", "stun", "whatsapp-stun", "telegram-hello",
                        "telegram-ndpi", "rtp", "dtls", "wireguard", "quic-v1-initial", "tls-sni",
                        "bytes"]
ActionKind = Literal["drop", "police", "reject", "shape", "random_loss", "blackhole_server",
                     "tcp_freeze", "allow"]
# Which transport each classifier inspects (None: the rule's protocol decides).
SIGNATURE_PROTOCOL: dict[str, str | None] = {
    "stun-cookie": "udp", "stun": "udp", "whatsapp-stun": "udp", "telegram-hello": "udp",
    "telegram-ndpi": "udp", "rtp": "udp",
    "dtls": "udp", "wireguard": "udp", "quic-v1-initial": "udp", "tls-sni": "tcp",
    "bytes": None,
}


@dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    def render(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def _parse_port_range(text: str) -> PortRange:
    found = PORT_RANGE.fullmatch(text)  # ASCII digits only: int() also reads '٣٤٧٨'
    if found is None:
        raise ValueError(f"{shorten(repr(text))} is not a port or a port range like 3478-3497")
    first = int(found[1])
    last = int(found[2] or found[1])
    if not (1 <= first <= last <= 65535):
        raise ValueError(f"{text!r}: ports run from 1 to 65535, low before high")
    return PortRange(first, last)


register_scalar(PortRange, _parse_port_range)


class DnsName(str):
    """A host name a policy removes from the national DNS, e.g. wa-chat.lab."""


def _parse_dns_name(text: str) -> DnsName:
    name = text.strip().lower()
    if not SNI_NAME.fullmatch(name) or name.startswith(".") or len(name) > 253:
        raise ValueError(f"{shorten(repr(text))} is not a host name like wa-chat.lab")
    return DnsName(name.rstrip("."))


register_scalar(DnsName, _parse_dns_name)


@dataclass(frozen=True)
class Provenance:
    """Where the rule comes from. `guesses` lists every parameter that no
    source gives, so nobody mistakes it for a measured fact."""

    sources: list[str]
    reported: str
    guesses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Match:
    protocol: Literal["udp", "tcp", "any"] = "any"
    direction: Literal["upstream", "downstream", "both"] = "both"
    dst_set: str | None = field(default=None, metadata={"check": check_name})
    src_set: str | None = field(default=None, metadata={"check": check_name})
    dst_ports: list[PortRange] = field(default_factory=list)
    src_ports: list[PortRange] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.dst_ports or self.src_ports) and self.protocol == "any":
            raise ValueError("port matches need protocol udp or tcp")

    @property
    def sets(self) -> list[str]:
        return [s for s in (self.dst_set, self.src_set) if s is not None]


def _check_hex(value: str) -> None:
    if not HEX_BYTES.fullmatch(value) or len(value) // 2 > MAX_MATCH_BYTES:
        raise ValueError(f"{shorten(repr(value))} is not 1 to {MAX_MATCH_BYTES} bytes of hex "
                         "like '16fefd' (two digits a byte, no spaces or 0x)")


@dataclass(frozen=True)
class ByteMatch:
    """Bytes at a fixed offset into the transport payload, optionally masked."""

    offset: int
    value: str = field(metadata={"check": _check_hex})
    mask: str | None = field(default=None, metadata={"check": _check_hex})

    def __post_init__(self) -> None:
        if self.mask is not None and len(self.mask) != len(self.value):
            raise ValueError("mask must be as long as value")
        if not 0 <= self.offset or self.end > MAX_UDP_PAYLOAD:
            raise ValueError(f"offset {self.offset} + {len(self.value) // 2} bytes lies past "
                             f"any packet (payloads end at byte {MAX_UDP_PAYLOAD} on the lab's "
                             "1500-byte links)")

    @property
    def end(self) -> int:
        return self.offset + len(self.value) // 2

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.value)

    @property
    def raw_mask(self) -> bytes:
        return bytes.fromhex(self.mask) if self.mask is not None else b"\xff" * len(self.raw)


@dataclass(frozen=True)
class Signature:
    """One classifier; harness/censor/signatures.py says what each kind means,
    where it comes from and how it runs (in nft or in the userspace stage)."""

    kind: SignatureKind
    payload_types: list[int] = field(default_factory=list)  # rtp
    at: list[ByteMatch] = field(default_factory=list)  # bytes (required), dtls (extra)
    payload_len: int | None = None  # bytes: exact payload length
    names: list[str] = field(default_factory=list)  # tls-sni
    sni_match: Literal["exact", "suffix", "substring"] = "suffix"  # tls-sni

    def __post_init__(self) -> None:
        self._check_fields_belong()
        if self.kind == "rtp" and not self.payload_types:
            raise ValueError("rtp needs payload_types, e.g. [96, 111]")
        if any(not 0 <= pt <= 127 for pt in self.payload_types):
            raise ValueError("RTP payload types run from 0 to 127")
        if self.kind == "bytes" and not self.at:
            raise ValueError("bytes needs at least one entry in `at` (offset, value, mask)")
        if self.kind == "tls-sni" and not self.names:
            raise ValueError("tls-sni needs names, e.g. [twitter.com, twimg.com]")
        for name in self.names:
            if not SNI_NAME.fullmatch(name) or len(name) > 253:
                raise ValueError(f"{shorten(repr(name))} is not a host name like twitter.com")
        if self.payload_len is not None:
            if not 1 <= self.payload_len <= MAX_UDP_PAYLOAD:
                raise ValueError(f"payload_len must be between 1 and {MAX_UDP_PAYLOAD}")
            past = [m.offset for m in self.at if m.end > self.payload_len]
            if past:
                raise ValueError(f"offset {past[0]} lies past the {self.payload_len}-byte "
                                 "payload this signature requires")

    def _check_fields_belong(self) -> None:
        owners = {"payload_types": ("rtp",), "at": ("bytes", "dtls"),
                  "payload_len": ("bytes",), "names": ("tls-sni",)}
        for name, kinds in owners.items():
            if getattr(self, name) not in (None, []) and self.kind not in kinds:
                raise ValueError(f"{name} belongs to {' and '.join(kinds)}, not {self.kind}")
        if self.sni_match != "suffix" and self.kind != "tls-sni":
            raise ValueError(f"sni_match belongs to tls-sni, not {self.kind}")


MIN_TTL_BELOW = 2  # a packet that arrives with TTL 1 is never forwarded
MAX_TTL_BELOW = 255


@dataclass(frozen=True)
class Ignore:
    """Packets the classifier does not see at all, as a DPI that sees through
    decoys would: `ttl_below` N ignores packets that arrive at the censor with
    a TTL under N (decoys sent to expire just past the DPI). Ignored packets
    are neither inspected nor counted among a flow's first packets."""

    ttl_below: int

    def __post_init__(self) -> None:
        if not MIN_TTL_BELOW <= self.ttl_below <= MAX_TTL_BELOW:
            raise ValueError(f"ttl_below must be between {MIN_TTL_BELOW} and {MAX_TTL_BELOW}")


@dataclass(frozen=True)
class Classify:
    """Inspection of a flow's first packets, and/or a trip wire on its packet
    count. Packets are counted with `ct packets` (both directions): see
    harness/censor/compiler.py for why. `ignore` leaves some packets out of
    both the inspection and the count."""

    first_packets: int = 3
    signatures: list[Signature] = field(default_factory=list)
    stun_cookie: bool = False  # shorthand for signatures: [{kind: stun-cookie}]
    after_packets: int | None = None
    ignore: Ignore | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.first_packets <= 50:
            raise ValueError("first_packets must be between 1 and 50")
        if self.after_packets is not None and not 1 <= self.after_packets <= 1_000_000:
            raise ValueError("after_packets must be between 1 and 1000000")
        if not self.all_signatures and self.after_packets is None:
            raise ValueError("classify needs signatures (or stun_cookie: true) or after_packets")

    @property
    def all_signatures(self) -> list[Signature]:
        extra = [Signature(kind="stun-cookie")] if self.stun_cookie else []
        return [*self.signatures, *extra]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    rate_kbit: float | None = None  # police, shape
    burst_bytes: int | None = None  # police
    loss_pct: float | None = None  # random_loss
    seconds: int | None = None  # blackhole_server
    after_kbytes: float | None = None  # tcp_freeze

    def __post_init__(self) -> None:
        wanted = {"police": {"rate_kbit", "burst_bytes"}, "shape": {"rate_kbit"},
                  "random_loss": {"loss_pct"}, "blackhole_server": {"seconds"},
                  "tcp_freeze": {"after_kbytes"}}.get(self.kind, set())
        given = {k for k in ("rate_kbit", "burst_bytes", "loss_pct", "seconds", "after_kbytes")
                 if getattr(self, k) is not None}
        if given - wanted:
            raise ValueError(f"{self.kind} takes no {' or '.join(sorted(given - wanted))}")
        if self.kind in ("police", "shape") and (
                self.rate_kbit is None or not 0.5 <= self.rate_kbit <= 10_000_000):
            raise ValueError(f"{self.kind} needs rate_kbit between 0.5 and 10000000")
        if self.burst_bytes is not None and not 64 <= self.burst_bytes <= 100_000_000:
            raise ValueError("burst_bytes must be between 64 and 100000000")
        if self.kind == "random_loss" and (self.loss_pct is None or
                                           not 0.01 <= self.loss_pct <= 100):
            raise ValueError("random_loss needs loss_pct between 0.01 and 100")
        if self.kind == "blackhole_server" and (self.seconds is None or
                                                not 1 <= self.seconds <= DAY_S):
            raise ValueError("blackhole_server needs seconds between 1 and 86400")
        if self.kind == "tcp_freeze" and (self.after_kbytes is None or
                                          not 0.1 <= self.after_kbytes <= 1_000_000):
            raise ValueError("tcp_freeze needs after_kbytes between 0.1 and 1000000")


@dataclass(frozen=True)
class Enforcement:
    """Partial enforcement: each new flow is rolled once, at its first packet;
    the rule applies to the flows that won."""

    probability: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0001 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0.0001 and 1")


@dataclass(frozen=True)
class Schedule:
    """Active `after_s` after the policy is applied; then, with `on_s` and
    `off_s`, on for on_s, off for off_s, and so on."""

    after_s: int = 0
    on_s: int | None = None
    off_s: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.after_s <= 30 * DAY_S:
            raise ValueError("after_s must be between 0 and 2592000")
        if (self.on_s is None) != (self.off_s is None):
            raise ValueError("on_s and off_s go together")
        if self.on_s is not None and self.off_s is not None:
            period = self.on_s + self.off_s
            if self.on_s < 1 or self.off_s < 1 or period < MIN_PERIOD_S or DAY_S % period:
                raise ValueError(f"on_s + off_s must be at least {MIN_PERIOD_S} and divide "
                                 "86400 (the kernel's time-of-day match repeats daily)")


@dataclass(frozen=True)
class Rule:
    id: str = field(metadata={"check": check_name})
    explain: str
    action: Action
    match: Match = field(default_factory=Match)
    classify: Classify | None = None
    scope: Literal["flow", "dst-proto", "dst"] = "flow"
    verdict_s: int = 120
    enforcement: Enforcement | None = None
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.verdict_s <= DAY_S:
            raise ValueError("verdict_s must be between 1 and 86400")
        kind = self.action.kind
        if kind == "police" and self.match.protocol == "any":
            raise ValueError("police keeps a bucket per flow: set match.protocol to udp or tcp")
        if kind == "tcp_freeze" and self.match.protocol != "tcp":
            raise ValueError("tcp_freeze counts TCP bytes: set match.protocol to tcp")
        if kind == "allow" and self.classify is not None:
            raise ValueError("allow lists destinations; it takes no classify")
        if self.scope != "flow" and self.classify is None and kind != "blackhole_server":
            raise ValueError(f"scope {self.scope} holds a classification: add classify")
        if kind == "blackhole_server" and self.scope != "flow":
            raise ValueError("blackhole_server always holds the server address for `seconds`; "
                             "leave scope out")
        if self.classify is not None:
            self._check_classify_protocol(self.classify)

    def _check_classify_protocol(self, classify: Classify) -> None:
        for signature in classify.all_signatures:
            wanted = SIGNATURE_PROTOCOL[signature.kind]
            if wanted is not None and self.match.protocol != wanted:
                raise ValueError(f"{signature.kind} inspects {wanted.upper()} payloads: set "
                                 f"match.protocol to {wanted}")
            if wanted is None and self.match.protocol == "any":
                raise ValueError("bytes needs match.protocol udp or tcp (payload offsets "
                                 "count from the transport header's end)")
            if signature.payload_len is not None and self.match.protocol != "udp":
                raise ValueError("payload_len is read from the UDP header: set "
                                 "match.protocol to udp")
            limit = MAX_TCP_PAYLOAD if self.match.protocol == "tcp" else MAX_UDP_PAYLOAD
            past = [m.offset for m in signature.at if m.end > limit]
            if past:
                raise ValueError(f"offset {past[0]} lies past any {self.match.protocol.upper()} "
                                 f"payload ({limit} bytes at most)")

    @property
    def probability(self) -> float:
        return 1.0 if self.enforcement is None else self.enforcement.probability


@dataclass(frozen=True)
class ActionOverride:
    """The action parameters an ISP profile may change (the kind stays)."""

    rate_kbit: float | None = None
    burst_bytes: int | None = None
    loss_pct: float | None = None
    seconds: int | None = None
    after_kbytes: float | None = None


@dataclass(frozen=True)
class RuleOverride:
    """How an including policy varies one rule of an included one."""

    action: ActionOverride | None = None
    first_packets: int | None = None
    after_packets: int | None = None
    verdict_s: int | None = None
    enforcement: Enforcement | None = None
    schedule: Schedule | None = None


DEFAULT_DNS_ID = "dns-removal"


@dataclass(frozen=True)
class DnsRemoval:
    """Names the subscribers' resolver stops answering while the policy is
    loaded: it says NXDOMAIN for each, as when a name is taken out of the
    national DNS. `id` is what `decided_by` names; what it counts during a
    call is the NXDOMAIN answers the resolver gave for these names."""

    remove: list[DnsName]
    id: str = field(default=DEFAULT_DNS_ID, metadata={"check": check_name})
    explain: str = ""

    def __post_init__(self) -> None:
        if not self.remove:
            raise ValueError("remove needs at least one name, e.g. [wa-chat.lab]")
        seen: set[str] = set()
        for name in self.remove:
            if name in seen:
                raise ValueError(f"{name!r} is listed twice in remove")
            seen.add(name)


@dataclass(frozen=True)
class RareOutcome:
    """An outcome the policy's own mechanism gives a small share of calls,
    besides the one it declares: e.g. a flow dropped with probability 0.75
    and a client that tries 14 ports leaves 0.75^14 = 1.8 % of its calls
    without any port. ``share_pct`` is that share, worked out in ``why`` from
    the rules (never measured to fit); a call showing this outcome, caused by
    ``decided_by`` and of an ``accepts`` failure kind, passes, marked rare.
    `callwall reproduce` sets the share it counted beside the declared one."""

    outcome: Literal["fails", "degraded"]
    share_pct: float
    decided_by: list[str]
    why: str
    accepts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.share_pct <= 20.0:
            raise ValueError("share_pct is the small share of calls (0-20 %) that show the "
                             "rare outcome; a larger share is not rare: declare it")
        if not self.decided_by:
            raise ValueError("a rare outcome needs decided_by: the rules that cause it")
        if not self.why.strip():
            raise ValueError("a rare outcome needs why: how the rules give it, and its share")
        if self.outcome != "fails" and self.accepts:
            raise ValueError("accepts (failure kinds) goes with outcome fails only")


@dataclass(frozen=True)
class Expectation:
    """What a call with one profile and strategy should show under this policy.

    - ``connects``: the whole call worked (harness.measure.verdict says what
      that takes), with MOS >= ``min_mos`` if given;
    - ``degraded``: media flowed for the whole window but the call sounds
      broken: MOS under the one bound every cell shares (DEGRADED_BELOW_MOS),
      or audio lost;
    - ``fails``: no usable call: it never set up, or it dropped.

    A negative expectation names its cause: ``decided_by`` lists the ids of the
    policy's rules of which at least one must have counted packets of this
    call (``link`` stands for a link impairment of the topology), and
    ``accepts`` narrows the failure kinds that count (empty: any failure the
    network can cause). ``basis`` says where the expectation comes from:
    ``report`` (a public report; ``source`` names it), ``mechanism`` (derived
    from the rules alone) or ``observed`` (taken from a measurement, which
    ``measured`` keeps: allowed only where the mechanism cannot decide).
    ``rarely`` declares a second outcome the same rules give a small, stated
    share of calls (:class:`RareOutcome`)."""

    outcome: Literal["connects", "fails", "degraded"]
    basis: Literal["report", "mechanism", "observed"]
    min_mos: float | None = None
    decided_by: list[str] = field(default_factory=list)
    accepts: list[str] = field(default_factory=list)
    source: str = ""
    measured: str = ""
    why: str = ""
    # An outcome the mechanism gives a small, stated share of calls instead.
    rarely: RareOutcome | None = None

    def rare_expectation(self) -> Expectation | None:
        """The rare outcome as an expectation of its own, to judge a call by."""
        if self.rarely is None:
            return None
        return Expectation(self.rarely.outcome, basis=self.basis,
                           decided_by=list(self.rarely.decided_by),
                           accepts=list(self.rarely.accepts), source=self.source,
                           measured=self.measured, why=self.rarely.why)

    def __post_init__(self) -> None:
        if self.rarely is not None and self.rarely.outcome == self.outcome:
            raise ValueError(f"rarely.outcome {self.rarely.outcome} is the declared outcome "
                             "itself: a rare outcome differs from it")
        if self.outcome != "connects" and self.min_mos is not None:
            raise ValueError("min_mos only goes with outcome connects")
        if self.min_mos is not None and not 1.0 <= self.min_mos <= 5.0:
            raise ValueError("MOS bounds lie between 1.0 and 5.0")
        if self.outcome == "connects" and (self.decided_by or self.accepts):
            raise ValueError("decided_by and accepts go with fails and degraded only")
        if self.outcome != "connects" and not self.decided_by:
            raise ValueError(f"a {self.outcome} expectation needs decided_by: the ids of the "
                             "rules that cause it (or 'link' for a link impairment)")
        if self.outcome != "fails" and self.accepts:
            raise ValueError("accepts (failure kinds) goes with outcome fails only")
        if self.basis == "report" and not self.source.strip():
            raise ValueError("basis report needs source: which report says so")
        if self.basis == "observed" and not self.measured.strip():
            raise ValueError("basis observed needs measured: the measurement it was "
                             "taken from (run, figures)")
        if self.basis != "observed" and self.measured:
            raise ValueError("measured goes with basis observed only")


# A decided_by entry that names the topology's link impairments, not a rule.
LINK_CAUSE = "link"
# In an allowlist policy, the final rule that drops whatever no rule allowed.
DEFAULT_DENY = "default-deny"


def check_include(value: str) -> None:
    """An include is a policy name (from policies/) or a path ending in .yaml."""
    if value.endswith(".yaml"):
        if "\x00" in value or len(value) > 200:
            raise ValueError(f"{shorten(repr(value))} is not a usable path")
        return
    check_name(value)


@dataclass(frozen=True)
class Policy:
    """`rules` of a loaded policy are the expanded list: the rules of every
    included policy (in order, with `override` applied), then its own."""

    name: str = field(metadata={"check": check_name})
    description: str
    provenance: Provenance
    mode: Literal["blocklist", "allowlist"] = "blocklist"
    include: list[str] = field(default_factory=list)
    override: dict[str, RuleOverride] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    # profile -> strategy -> what that call should show. Every cell is written
    # out: a new profile or strategy must be thought through for each policy.
    expect: dict[str, dict[str, Expectation]] = field(default_factory=dict)
    # Names taken out of the national DNS while the policy is loaded.
    dns: DnsRemoval | None = None

    @property
    def sets(self) -> list[str]:
        return sorted({s for rule in self.rules for s in rule.match.sets})

    def expectation(self, profile: str, strategy: str) -> Expectation | None:
        """What the policy declares for a call with `profile` and `strategy`."""
        return self.expect.get(profile, {}).get(strategy)


def load_policy(path: Path, known_sets: Collection[str] | None = None) -> Policy:
    """Load and check a policy, expanding its includes and overrides; with
    `known_sets`, also check that every set it targets is bound by the
    topology it will run on."""
    from harness.spec.includes import load_expanded  # the loader needs the schema above

    policy, loc, origins = load_expanded(path)
    validate_policy(policy, loc, known_sets, origins)
    return policy


def validate_policy(policy: Policy, loc: Located, known_sets: Collection[str] | None,
                    origins: dict[str, Located] | None = None) -> None:
    """Checks across rules. `origins` maps a rule id to where it was written
    (an included file's node), so errors point at the right file and line."""
    origins = origins or {}
    if len(policy.rules) > MAX_RULES:
        raise locate(loc, "rules").error(f"{len(policy.rules)} rules; at most {MAX_RULES}")
    probabilistic = [r.id for r in policy.rules if r.probability < 1.0]
    if len(probabilistic) > MAX_PROBABILISTIC_RULES:
        raise locate(loc, "rules").error(
            f"{len(probabilistic)} rules with enforcement.probability; at most "
            f"{MAX_PROBABILISTIC_RULES} (two roll sets each)")
    for index, rule in enumerate(policy.rules):
        where = origins.get(rule.id) or locate(loc, "rules", index)
        if rule.action.kind == "allow" and policy.mode != "allowlist":
            raise locate(where, "action").error("allow only makes sense with mode: allowlist")
        if known_sets is not None:
            _check_rule_sets(rule, locate(where, "match"), known_sets)
    if policy.dns is not None and policy.dns.id in {r.id for r in policy.rules}:
        raise locate(loc, "dns", "id").error(
            f"{policy.dns.id!r} is already a rule id; the DNS removal needs its own id")
    _check_expectations(policy, loc)


def _check_expectations(policy: Policy, loc: Located) -> None:
    rule_ids = {rule.id for rule in policy.rules}
    for profile, by_strategy in policy.expect.items():
        if profile not in profiles():  # endpoint descriptors included
            raise locate(loc, "expect", profile).error(
                f"unknown profile {profile!r}; profiles are: {', '.join(profiles())}")
        for strategy, expectation in by_strategy.items():
            if strategy not in strategies():
                raise locate(loc, "expect", profile, strategy).error(
                    f"unknown strategy {strategy!r}; strategies are: "
                    f"{', '.join(strategies())}")
            causes = rule_ids | {LINK_CAUSE} | (
                {DEFAULT_DENY} if policy.mode == "allowlist" else set()) | (
                {policy.dns.id} if policy.dns is not None else set())
            for index, cause in enumerate(expectation.decided_by):
                if cause not in causes:
                    known = ", ".join(sorted(rule_ids)) or "none"
                    deny = f", {DEFAULT_DENY!r} for the allowlist's default deny" \
                        if policy.mode == "allowlist" else ""
                    dns = f", {policy.dns.id!r} for its DNS removal" \
                        if policy.dns is not None else ""
                    raise locate(loc, "expect", profile, strategy, "decided_by", index).error(
                        f"{shorten(repr(cause))} is not a rule of this policy (rules: {known}; "
                        f"or {LINK_CAUSE!r} for a link impairment{deny}{dns})")


def _check_rule_sets(rule: Rule, loc: Located, known_sets: Collection[str]) -> None:
    for key in ("dst_set", "src_set"):
        name = getattr(rule.match, key)
        if name is not None and name not in known_sets:
            known = ", ".join(sorted(known_sets)) or "none"
            raise locate(loc, key).error(
                f"set {shorten(repr(name))} is not bound by the topology (it binds: {known})"
            )
