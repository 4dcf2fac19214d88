"""Real STUN clients against the lab's STUN server (coturn) through the
censor: Debian's `stun` (stun-client, classic RFC 3489: no magic cookie) and
coturn's `turnutils_stunclient` (RFC 5389). Under baseline both get their
mapped address back (coturn answers old-style Binding requests unless told
not to, docs/sources.md S55); under dpi-stun-drop both are blocked, and the
deciding rule's counter counted their packets. The same rule with the bare
cookie test (`stun-cookie`) lets the classic client through: the gap the
`stun` signature closes."""

from __future__ import annotations

import shutil

import pytest

from harness import paths
from harness.spec.policy import Policy, Signature, load_policy
from harness.testbed import Lab
from tests.calibration.censor_support import packets_counted, with_rule

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture
RULE = "stun-at-flow-start"
CLIENT_TIMEOUT_S = 15  # `stun` runs its three RFC 3489 tests with retries: ~6 s answered
ANSWERED = {"stun": "Primary: Independent Mapping", "turnutils_stunclient": "UDP reflexive addr"}
BLOCKED = {"stun": "Primary: Blocked or could not reach STUN server"}
CLIENTS = tuple(ANSWERED)


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        package = "stun-client" if tool == "stun" else "coturn"
        pytest.fail(f"{tool} is missing (Debian package {package}; `make install` adds it)")


def _ask(lab: Lab, tool: str) -> str:
    """Run the client in the caller host against the lab's STUN server; its
    output (the coreutils timeout ends a client that waits forever)."""
    _require(tool)
    services = lab.services
    assert services is not None, "the lab's services are not running"
    argv = [tool, services.stun_ip] + (["-p", str(services.stun_port)]
                                       if tool == "turnutils_stunclient" else [])
    if tool == "stun" and services.stun_port != 3478:
        argv[1] = f"{services.stun_ip}:{services.stun_port}"
    result = lab.host_with_role("caller").run(["timeout", str(CLIENT_TIMEOUT_S), *argv],
                                              timeout=CLIENT_TIMEOUT_S + 10, check=False)
    return result.stdout + result.stderr


def _policy(lab: Lab, name: str) -> Policy:
    return load_policy(paths.policy_path(name), lab.topology.sets.keys())


@pytest.mark.parametrize("tool", CLIENTS)
def test_both_clients_get_an_answer_under_baseline(lab: Lab, tool: str) -> None:
    lab.apply_policy(_policy(lab, "baseline"))
    output = _ask(lab, tool)
    assert ANSWERED[tool] in output, output


@pytest.mark.parametrize("tool", CLIENTS)
def test_dpi_stun_drop_blocks_both_and_counts_them(lab: Lab, tool: str) -> None:
    lab.apply_policy(_policy(lab, "dpi-stun-drop"))
    classified = packets_counted(lab, f"{RULE}: classify")
    enforced = packets_counted(lab, f"{RULE}: enforce")
    output = _ask(lab, tool)
    assert ANSWERED[tool] not in output, output
    if tool in BLOCKED:
        assert BLOCKED[tool] in output, output
    assert packets_counted(lab, f"{RULE}: classify") > classified
    assert packets_counted(lab, f"{RULE}: enforce") > enforced


def test_the_bare_cookie_test_lets_classic_stun_through(lab: Lab) -> None:
    cookie_only = with_rule(_policy(lab, "dpi-stun-drop"),
                            classify={"signatures": [Signature(kind="stun-cookie")]})
    lab.apply_policy(cookie_only)
    assert ANSWERED["stun"] in _ask(lab, "stun")
    assert ANSWERED["turnutils_stunclient"] not in _ask(lab, "turnutils_stunclient")
