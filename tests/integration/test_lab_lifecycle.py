"""A lab comes up, routes packets, and goes down without leaving anything."""

from __future__ import annotations

from harness import paths
from harness.netns.registry import list_runs
from harness.testbed import Lab
from tests.integration.rootsnapshot import RootSnapshot


def _ping(lab: Lab, source: str, target: str) -> bool:
    address = str(lab.topology.address_of(target))
    result = lab.host(source).run(["ping", "-c", "1", "-W", "2", address], check=False)
    return result.returncode == 0


def test_default_lab_routes_and_leaves_nothing(root_snapshot: RootSnapshot) -> None:
    lab = Lab.create(paths.topology_path("ru-to-abroad"))
    with lab:
        lab.up()
        owned = [*lab.registry.state.hosts.values(), *lab.registry.state.processes]
        assert len(owned) >= len(lab.topology.hosts) + 3  # shells, coturn x2, signalling
        assert _ping(lab, "caller", "relay")
        assert _ping(lab, "caller", "signal")
        assert _ping(lab, "callee", "stun")
        # The callee sits behind a NAT: nothing abroad can open a flow to it.
        assert not _ping(lab, "relay", "callee")
    assert not lab.registry.dir.exists()
    assert not any(o.alive() for o in owned)
    assert lab.run_id not in [r.state.run_id for r in list_runs()]
    assert RootSnapshot.take() == root_snapshot


def _rx_packets(lab: Lab, host: str) -> dict[str, int]:
    """Received packets per interface of `host`, from its namespace's /proc view."""
    lines = open(f"/proc/{lab.host(host).pid}/net/dev").read().splitlines()[2:]
    counts = {}
    for line in lines:
        name, data = line.split(":", 1)
        counts[name.strip()] = int(data.split()[1])
    return counts


def test_domestic_lab_puts_both_parties_behind_the_censor() -> None:
    with Lab.create(paths.topology_path("ru-domestic")) as lab:
        lab.up()
        censor = lab.topology.host_with_role("censor")
        facing = {intf.peer_host: intf.name for intf in lab.topology.interfaces(censor)}
        for party, nat in (("caller", "cgnat-a"), ("callee", "cgnat-b")):
            before = _rx_packets(lab, censor)[facing[nat]]
            assert _ping(lab, party, "relay")
            assert _rx_packets(lab, censor)[facing[nat]] > before
