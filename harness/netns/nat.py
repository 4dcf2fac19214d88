"""NAT and home-router firewall rules for hosts with role `nat`: a pure
function from the NAT spec to an nftables ruleset."""

from __future__ import annotations

from harness.spec.topology import NatSpec

NAT_TABLE = "callwall_nat"


def nat_ruleset(spec: NatSpec, outside_interface: str) -> str:
    """Masquerade towards `outside_interface`; drop unsolicited inbound traffic.

    Dropping new inbound flows matters for hole punching: Linux would otherwise
    confirm a conntrack entry for an early inbound check, and the later
    outbound packet of the same 5-tuple would be given a different port.
    `symmetric` maps every new flow to a random port, so a peer can never
    predict it from the STUN server's answer.
    """
    port_mapping = " random" if spec.mapping == "symmetric" else ""
    outside = f'"{outside_interface}"'
    return "\n".join([
        f"table ip {NAT_TABLE} {{",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        f"\t\toifname {outside} masquerade{port_mapping}",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\tiifname {outside} ct state new counter drop",
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\tiifname {outside} meta l4proto udp ct state new counter drop",
        "\t}",
        "}",
        "",
    ])
