"""Names out of the national DNS, without root: the policy field ``dns``
(errors name file, line and field; decided_by may name its id; includes pass
it on), the zone the harness generates for the subscribers' resolver, and
the censor's part (the served zone without the names, the resolver told to
reload, the NXDOMAIN answers counted) on a fake lab whose resolver is a
stand-in that logs its reloads as dnsmasq does. Real dnsmasq:
tests/integration/test_app_text_dns.py."""

from __future__ import annotations

import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from harness import paths
from harness.censor.applier import ApplyError
from harness.censor.compiler import bindings_for, compile_policy
from harness.censor.counters import counters_since, read_dns_counters
from harness.censor.dns import NXDOMAIN_LINE, RemovalState, nxdomain_count
from harness.netns.directory import RESOLVER, ResolverFiles, read_hosts_file
from harness.services.resolver import dnsmasq_argv, lab_name, lab_zone
from harness.spec.policy import load_policy
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology
from harness.testbed import Lab
from harness.testing.fake import FakeBackend, Program
from harness.testing.labs import running_lab

HEAD = "name: p\ndescription: d\nprovenance: {sources: [s], reported: r}\n"
RULE = ("rules:\n  - id: drop-x\n    explain: e\n    action: {kind: drop}\n"
        "    match: {protocol: udp}\n")
EXPECT = ("expect:\n  whatsapp-like:\n    direct: {outcome: fails, basis: mechanism, "
          "decided_by: [%s], accepts: [dns-failed]}\n")
# What dnsmasq --log-queries writes (captured from dnsmasq 2.90).
LOG = """Dec  3 13:36:50 dnsmasq[16429]: read /x/zone.hosts - 2 names
Dec  3 13:36:51 dnsmasq[16429]: query[A] wa-chat.lab from 100.64.1.2
Dec  3 13:36:51 dnsmasq[16429]: /x/zone.hosts wa-chat.lab is 198.18.8.2
Dec  3 13:36:51 dnsmasq[16429]: query[A] nope.lab from 100.64.1.2
Dec  3 13:36:51 dnsmasq[16429]: config nope.lab is NXDOMAIN
Dec  3 13:36:52 dnsmasq[16429]: 3 100.64.1.2/41006 config wa-chat.lab is NXDOMAIN
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- the schema


def test_a_policy_removes_names_and_decided_by_names_the_removal(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "dns: {id: nsdi-wa, explain: e, remove: [WA-Chat.lab, "
                 "wa-relay.lab.]}\n" + RULE + EXPECT % "nsdi-wa")
    policy = load_policy(path)
    assert policy.dns is not None and policy.dns.id == "nsdi-wa"
    assert policy.dns.remove == ["wa-chat.lab", "wa-relay.lab"]  # lower case, no root dot
    assert policy.expectation("whatsapp-like", "direct").decided_by == ["nsdi-wa"]  # type: ignore[union-attr]
    plan = compile_policy(policy, bindings_for(load_topology(paths.topology_path(
        "ru-to-abroad"))))
    assert plan.dns == policy.dns
    assert "nsdi-wa: the subscribers' resolver answers NXDOMAIN for wa-chat.lab" in \
        plan.describe()


# (the dns block, the field named, a phrase of the message, the line's marker)
DNS_CASES = [
    ("dns: {remove: []}\n", "dns", "at least one name", "dns:"),
    ("dns:\n  remove:\n    - wa-chat.lab\n    - 'bad name'\n", "dns.remove[1]",
     "not a host name", "bad name"),
    ("dns: {remove: [a.lab, A.lab]}\n", "dns", "listed twice", "dns:"),
    ("dns: {id: Bad_Id, remove: [a.lab]}\n", "dns.id", "not a valid name", "Bad_Id"),
    ("dns: {remove: [a.lab], colour: red}\n", "dns.colour", "unknown field", "colour"),
    ("dns:\n  id: drop-x\n  remove: [a.lab]\n", "dns.id", "already a rule id", "id: drop-x"),
]


@pytest.mark.parametrize(("block", "field", "message", "marker"), DNS_CASES,
                         ids=[c[2].split()[0] + f"-{i}" for i, c in enumerate(DNS_CASES)])
def test_a_bad_dns_block_names_file_line_and_field(tmp_path: Path, block: str, field: str,
                                                   message: str, marker: str) -> None:
    path = write(tmp_path, HEAD + block + RULE)
    with pytest.raises(SpecError) as caught:
        load_policy(path)
    error = caught.value
    assert (error.file, error.field) == (str(path), field), str(error)
    assert message in error.message, str(error)
    lines = path.read_text().splitlines()
    assert marker in lines[error.line - 1], (error.line, lines)  # type: ignore[operator]


def test_decided_by_cannot_name_a_removal_the_policy_lacks(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + RULE + EXPECT % "dns-removal")
    with pytest.raises(SpecError, match="'dns-removal' is not a rule of this policy"):
        load_policy(path)


def test_an_including_policy_inherits_the_removal(tmp_path: Path) -> None:
    write(tmp_path, HEAD.replace("name: p", "name: base") + "dns: {remove: [wa-chat.lab]}\n",
          "base.yaml")
    path = write(tmp_path, HEAD + "include: [base.yaml]\n" + RULE + EXPECT % "dns-removal")
    policy = load_policy(path)
    assert policy.dns is not None and policy.dns.remove == ["wa-chat.lab"]
    write(tmp_path, HEAD.replace("name: p", "name: other") + "dns: {remove: [tg-server.lab]}\n",
          "other.yaml")
    both = write(tmp_path, HEAD + "include: [base.yaml, other.yaml]\n", "both.yaml")
    with pytest.raises(SpecError, match="second DNS removal") as caught:
        load_policy(both)
    assert caught.value.field == "include[1]"


# ---------------------------------------------------------------------- the zone


def test_the_zone_names_every_server_as_seen_from_where_one_asks() -> None:
    topology = load_topology(paths.topology_path("ru-to-abroad"))
    national = lab_zone(topology, "isp-dns")
    assert set(national) == {lab_name(h) for h in ("relay", "stun", "signal", "wa-relay",
                                                   "tg-relay", "vpn", "wa-chat", "tg-server",
                                                   "max")}
    assert national["wa-chat.lab"] == IPv4Address("198.18.8.2")
    assert national["tg-server.lab"] == IPv4Address("198.18.9.2")
    # The domestic server: its leg in the ISP's network for the ISP's
    # subscribers, its internet leg for the contact abroad and for a tunnel.
    assert national["max.lab"] == IPv4Address("100.64.10.2")
    assert lab_zone(topology, "callee")["max.lab"] == IPv4Address("198.18.10.2")
    assert lab_zone(topology)["max.lab"] == IPv4Address("198.18.10.2")
    domestic = load_topology(paths.topology_path("ru-domestic"))
    assert lab_zone(domestic, "isp-dns")["max.lab"] == IPv4Address("100.64.10.2")
    assert lab_zone(domestic, "callee")["max.lab"] == IPv4Address("100.64.11.2")


def test_dnsmasq_answers_the_lab_domain_from_the_zone_alone(tmp_path: Path) -> None:
    files = ResolverFiles(tmp_path)
    argv = dnsmasq_argv("100.64.53.2", files)
    assert argv[0] == "dnsmasq" and "--keep-in-foreground" in argv
    for option in ("--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--local=/lab/",
                   "--listen-address=100.64.53.2", "--bind-interfaces", "--log-queries",
                   f"--addn-hosts={files.served_zone}", f"--log-facility={files.query_log}"):
        assert option in argv, option


def test_nxdomain_answers_are_counted_for_the_removed_names_only(tmp_path: Path) -> None:
    files = ResolverFiles(tmp_path)
    files.query_log.write_text(LOG)
    assert [m.group(1) for line in LOG.splitlines() if (m := NXDOMAIN_LINE.search(line))] == [
        "nope.lab", "wa-chat.lab"]
    assert nxdomain_count(files, RemovalState("r", ("wa-chat.lab",), 0)) == 1
    # Only what the log holds after the removal began.
    assert nxdomain_count(files, RemovalState("r", ("wa-chat.lab",), len(LOG))) == 0


# ---------------------------------------------------------------------- the censor's part

# A resolver stand-in: reads nothing, answers nothing, but logs each (re)load
# of its zone file as dnsmasq does, at start and on SIGHUP.
RELOADER = """
import pathlib, signal, sys, time
option = lambda name: next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith(name))
log, zone = option("--log-facility="), option("--addn-hosts=")
def read(*_):
    names = len(pathlib.Path(zone).read_text().splitlines())
    with open(log, "a") as handle:
        handle.write(f"Dec  3 13:36:50 dnsmasq[1]: read {zone} - {names} names\\n")
signal.signal(signal.SIGHUP, read)
read()
while True:
    time.sleep(1)
"""


def _started(files: ResolverFiles) -> None:
    """Until the stand-in has read its zone (and so handles SIGHUP)."""
    deadline = time.monotonic() + 10.0
    while "read " not in (files.query_log.read_text() if files.query_log.exists() else ""):
        assert time.monotonic() < deadline, "the resolver stand-in never started"
        time.sleep(0.02)


def _dns_policy(tmp_path: Path) -> Path:
    return write(tmp_path, HEAD + "dns: {id: nsdi-wa, remove: [wa-chat.lab, wa-relay.lab]}\n")


def test_a_policy_takes_names_out_and_the_next_puts_them_back(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.script.on_start(["dnsmasq"], Program(RELOADER))
    with running_lab(root=tmp_path / "runs", backend=backend) as lab:
        services = lab.services
        assert services is not None and services.resolver_files is not None
        files = services.resolver_files
        _started(files)
        full = read_hosts_file(files.full_zone)
        censor = lab.host_with_role("censor")
        assert read_dns_counters(censor) == []
        lab.apply_policy(load_policy(_dns_policy(tmp_path)))
        served = read_hosts_file(files.served_zone)
        assert served == {n: a for n, a in full.items() if n not in ("wa-chat.lab",
                                                                       "wa-relay.lab")}
        assert "max.lab" in served and files.query_log.read_text().count("read ") == 2
        before = read_dns_counters(censor)
        assert [(c.rule, c.packets) for c in before] == [("nsdi-wa", 0)]
        with files.query_log.open("a") as log:  # what dnsmasq logs as it answers
            log.write("Dec  3 13:37:00 dnsmasq[1]: config wa-chat.lab is NXDOMAIN\n"
                      "Dec  3 13:37:00 dnsmasq[1]: config max.lab is NXDOMAIN\n")
        after = read_dns_counters(censor)
        assert [(c.rule, c.packets) for c in counters_since(before, after)] == [("nsdi-wa", 1)]
        lab.apply_policy(load_policy(_dns_policy(tmp_path)))  # again: nothing changes
        assert files.query_log.read_text().count("read ") == 2
        assert read_dns_counters(censor)[0].packets == 1
        lab.apply_policy(load_policy(paths.policy_path("baseline")))
        assert read_hosts_file(files.served_zone) == full
        assert files.query_log.read_text().count("read ") == 3
        assert read_dns_counters(censor) == []


def test_a_removal_with_the_resolver_down_is_refused(tmp_path: Path, fake_lab: Lab) -> None:
    fake_lab.registry.stop(RESOLVER)
    with pytest.raises(ApplyError, match="national resolver is not running"):
        fake_lab.apply_policy(load_policy(_dns_policy(tmp_path)))

