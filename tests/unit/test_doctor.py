"""`callwall doctor`'s judgement, from probe results: which backend each part
uses, what counts as required, and the exit status. (The probes themselves
run as root in tests/integration/test_doctor.py.)"""

from __future__ import annotations

import pytest

from harness import doctor
from harness.link.selection import Probe

ALL_OK = {feature: Probe(True) for feature in doctor.KERNEL_NEEDS}




def test_netem_wins_when_the_kernel_has_it() -> None:
    assert doctor.choose_link_backend(ALL_OK, impaird_ok=False) == "netem"


def test_userspace_without_netem_needs_nfqueue_and_the_daemon() -> None:
    no_netem = dict(ALL_OK)
    no_netem["sch_netem"] = Probe(False, "gone")
    assert doctor.choose_link_backend(no_netem, impaird_ok=True) == "userspace"
    assert doctor.choose_link_backend(no_netem, impaird_ok=False) == "none"
    no_queue = dict(no_netem)
    no_queue["iptables NFQUEUE target"] = Probe(False, "no xt_NFQUEUE")
    assert doctor.choose_link_backend(no_queue, impaird_ok=True) == "none"


def test_nfqueue_is_required_only_without_netem() -> None:
    probes = dict(ALL_OK)
    probes["iptables NFQUEUE target"] = Probe(False, "no xt_NFQUEUE")
    with_netem = {c.feature: c for c in doctor.kernel_checks(probes, "netem")}
    without = {c.feature: c for c in doctor.kernel_checks(probes, "userspace")}
    assert not with_netem["iptables NFQUEUE target"].required
    assert without["iptables NFQUEUE target"].required
    assert without["iptables NFQUEUE target"].status == "MISSING"


def test_missing_optional_features_do_not_fail() -> None:
    probes = dict(ALL_OK)
    probes["sch_netem"] = Probe(False, "not built")
    probes["kernel WireGuard"] = Probe(False, "Unknown device type")
    report = doctor.Report(doctor.kernel_checks(probes, "userspace"), {})
    assert report.missing_required == []
    probes["nft @th payload match"] = Probe(False, "syntax error")
    report = doctor.Report(doctor.kernel_checks(probes, "userspace"), {})
    assert [c.feature for c in report.missing_required] == ["nft @th payload match"]


def test_render_names_backends_and_what_to_install() -> None:
    probes = dict(ALL_OK)
    probes["sch_netem"] = Probe(False, "No such file or directory")
    checks = doctor.kernel_checks(probes, "userspace")
    text = doctor.render(doctor.Report(checks, doctor.backends_summary(probes, "userspace")))
    netem_line = next(line for line in text.splitlines() if line.startswith("sch_netem"))
    assert "missing" in netem_line and "CONFIG_NET_SCH_NETEM" in netem_line
    assert "userspace (callwall-impaird on NFQUEUE)" in text
    assert text.rstrip().endswith("all required features present")


@pytest.mark.parametrize("feature", sorted(doctor.KERNEL_NEEDS))
def test_every_feature_says_what_to_install(feature: str) -> None:
    required, used_for, install = doctor.KERNEL_NEEDS[feature]
    assert used_for and install
