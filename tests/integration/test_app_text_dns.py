"""Text messages, the national DNS and the domestic app in a real lab: every
app-like profile delivers its text both ways under baseline, through its own
chat server and with its names resolved by the ISP's resolver; text keeps
working under the mobile allowlist while the call fails; a blocked chat
server fails the call at signalling with text_ok false (not an error); a
policy that takes WhatsApp's names out of the national DNS fails
whatsapp-like with dns-failed, and the removal counts its NXDOMAIN answers;
max-like connects under the mobile allowlist, where the foreign apps fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.calls.app_like import TEXT_MESSAGES
from harness.measure.record import CallRecord
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.tunnels import missing_tools

SHORT = CallSettings(media_s=4.0, setup_timeout_s=15.0)
TEST_POLICIES = Path(__file__).parent / "policies"
APP_PROFILES = ("whatsapp-like", "telegram-like", "max-like")
CHAT_SERVER = {"whatsapp-like": "wa-chat.lab", "telegram-like": "tg-server.lab",
               "max-like": "max.lab"}


def _peer(call_dir: Path, role: str) -> dict[str, Any]:
    peer: dict[str, Any] = json.loads((call_dir / f"{role}.json").read_text())
    return peer


def _counted(record: CallRecord, rule: str) -> int:
    """What `rule` counted during the call (its counters are `rule` or `rule: part`)."""
    return sum(int(c["packets"]) for c in record.censor_counters
               if c["rule"] == rule or c["rule"].startswith(rule + ":"))


def _all_text_arrived(record: CallRecord) -> None:
    assert record.text_ok is True, record.text_counts
    assert record.text_counts == {"caller_sent": TEXT_MESSAGES,
                                  "caller_received": TEXT_MESSAGES,
                                  "callee_sent": TEXT_MESSAGES,
                                  "callee_received": TEXT_MESSAGES}


@pytest.mark.parametrize("profile", APP_PROFILES)
def test_text_goes_both_ways_over_the_apps_own_server(lab: Lab, run_files: Path,
                                                      profile: str) -> None:
    call_dir = run_files / "calls" / profile
    record = judged_call(lab, load_policy(paths.policy_path("baseline")), "direct", call_dir,
                         SHORT, profile=profile)
    assert record.connected and record.verdict == "pass", record.judgement
    _all_text_arrived(record)
    stored = json.loads((call_dir / "record.json").read_text())
    assert stored["text_ok"] is True and stored["text_counts"] == record.text_counts
    services = lab.services
    assert services is not None and services.resolver_ip is not None
    caller, callee = _peer(call_dir, "caller"), _peer(call_dir, "callee")
    # The caller asked the ISP's resolver; the callee was given the names.
    assert caller["resolver"] == services.resolver_ip and callee["resolver"] is None
    chat = CHAT_SERVER[profile]
    assert chat in caller["resolved"] and chat in callee["resolved"]
    assert caller["signalling"].startswith(caller["resolved"][chat] + ":")


def test_text_keeps_working_while_calls_fail_under_the_allowlist(lab: Lab,
                                                                 run_files: Path) -> None:
    """The allowlist admits TCP 443 to the messengers' signalling servers:
    whatsapp-like's chat server answers on its fallback port, so text gets
    through, while its relay is not listed and the call fails."""
    call_dir = run_files / "calls" / "whatsapp-allowlist"
    policy = load_policy(paths.policy_path("mobile-allowlist-2026"))
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="whatsapp-like")
    assert record.outcome == "fails" and record.verdict == "pass", record.judgement
    assert record.failure_kind == "relay-unreachable"
    _all_text_arrived(record)
    caller = _peer(call_dir, "caller")
    assert caller["signalling"].endswith(":443"), caller["signalling"]  # 5222 was dropped
    assert _counted(record, "default-deny") > 0


def test_a_blocked_chat_server_fails_the_call_and_its_text(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "whatsapp-chat-blocked"
    policy = load_policy(TEST_POLICIES / "whatsapp-chat-block.yaml")
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="whatsapp-like")
    assert record.outcome == "fails" and record.verdict == "pass", record.judgement
    assert record.failure_kind == "signalling-unreachable"
    assert record.text_ok is False
    assert record.text_counts["caller_sent"] == 0 and record.text_counts["caller_received"] == 0
    caller = _peer(call_dir, "caller")
    assert (caller["error"], caller["failure_stage"]) == ("signalling-unreachable", "signalling")
    assert caller["text_ok"] is False and "signalling-unreachable" in caller["text_detail"]
    assert _counted(record, "drop-tcp-to-whatsapp-servers") > 0


def test_whatsapp_removed_from_the_national_dns_fails_with_dns_failed(
        lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "whatsapp-dns"
    policy = load_policy(TEST_POLICIES / "whatsapp-dns-removal.yaml")
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="whatsapp-like")
    assert record.outcome == "fails" and record.verdict == "pass", record.judgement
    assert record.failure_kind == "dns-failed"
    caller = _peer(call_dir, "caller")
    assert (caller["error"], caller["failure_stage"]) == ("dns-failed", "dns")
    assert "wa-chat.lab: NXDOMAIN" in caller["detail"]
    assert record.text_ok is False
    assert _counted(record, "nsdi-whatsapp") >= 1
    assert record.judgement["deciding_rules"][0]["rule"] == "nsdi-whatsapp"
    # The domestic app's name is still there under the same policy ...
    other = judged_call(lab, policy, "direct", run_files / "calls" / "max-dns", SHORT,
                        profile="max-like")
    assert other.connected and other.verdict == "pass", other.judgement
    assert _counted(other, "nsdi-whatsapp") == 0
    # ... and the next policy puts WhatsApp's names back.
    lab.apply_policy(load_policy(paths.policy_path("baseline")))
    services = lab.services
    assert services is not None and services.resolver_files is not None
    served = services.resolver_files.served_zone.read_text()
    assert "wa-chat.lab" in served and "wa-relay.lab" in served


def test_a_vpn_gets_around_the_dns_removal(lab: Lab, run_files: Path) -> None:
    """Inside a tunnel the caller's names are resolved abroad (given on its
    command line), so the national DNS's removal does not reach it (S116)."""
    missing = missing_tools("wireguard")
    if missing:
        pytest.skip(f"wireguard needs {', '.join(missing)}")
    call_dir = run_files / "calls" / "whatsapp-dns-wireguard"
    policy = load_policy(TEST_POLICIES / "whatsapp-dns-removal.yaml")
    record = judged_call(lab, policy, "wireguard", call_dir, SHORT, profile="whatsapp-like")
    assert record.connected and record.verdict == "pass", record.judgement
    _all_text_arrived(record)
    caller = _peer(call_dir, "caller")
    assert caller["resolver"] is None and caller["resolved"]["wa-chat.lab"] == "198.18.8.2"
    assert _counted(record, "nsdi-whatsapp") == 0


def test_max_like_connects_under_the_mobile_allowlist(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "max-allowlist"
    policy = load_policy(paths.policy_path("mobile-allowlist-2026"))
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="max-like")
    assert record.connected and record.verdict == "pass", record.judgement
    assert record.mos is not None and record.mos >= 4.0, record.directions
    assert record.path == "udp-relay"
    _all_text_arrived(record)
    assert _peer(call_dir, "caller")["resolved"]["max.lab"] == "100.64.10.2"
