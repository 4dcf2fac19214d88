"""The files a SIP call runs from (harness.calls.sip_config), the profile's
place in the vocabulary, and the proxy configuration checked by kamailio
itself where it is installed."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.calls import CLIENTS, CallError, check_strategy, missing_profile_tools
from harness.calls.base import CallSettings
from harness.calls.sip import peer_argv
from harness.calls.sip_config import (
    ACCOUNTS_NAME,
    SipSide,
    baresip_argv,
    dial_uri,
    proxy_argv,
    render_accounts,
    render_config,
    render_contacts,
    render_proxy_config,
    write_side,
)
from harness.netns.endpoint import Endpoint
from harness.spec.names import PLACEABLE, PROFILE_DESCRIPTIONS, Profile, unplaceable


def _side(tmp_path: Path, role: str = "caller", strategy: str = "direct") -> SipSide:
    return SipSide(role=role, listen_ip="100.64.1.2", proxy=Endpoint("198.18.3.2", 5060),
                   strategy=strategy, stun=Endpoint("198.18.2.2", 3478),
                   turn=Endpoint("198.18.1.2", 3478), turn_username="cwUser1",
                   turn_password="Secret-pass_2", audio=tmp_path / "ref.wav",
                   recordings=tmp_path / "rec")


def test_direct_uses_ice_with_the_lab_stun_server(tmp_path: Path) -> None:
    caller = render_accounts(_side(tmp_path))
    assert caller.startswith("<sip:caller@198.18.3.2;transport=tcp>;")
    assert "medianat=ice" in caller and 'stunserver="stun:198.18.2.2:3478"' in caller
    assert "regint=0" in caller and "answermode" not in caller
    assert "audio_codecs=opus/48000/2" in caller and "ptime=20" in caller
    callee = render_accounts(_side(tmp_path, "callee"))
    assert "regint=600" in callee and "answermode=auto" in callee


def test_turn_udp_uses_the_turn_media_nat_with_credentials(tmp_path: Path) -> None:
    accounts = render_accounts(_side(tmp_path, strategy="turn-udp"))
    assert "medianat=turn" in accounts
    assert 'stunserver="turn:198.18.1.2:3478"' in accounts
    assert "stunuser=cwUser1" in accounts and "stunpass=Secret-pass_2" in accounts


def test_config_loads_the_modules_and_files_of_a_call(tmp_path: Path) -> None:
    config = render_config(_side(tmp_path))
    for module in ("aufile.so", "sndfile.so", "opus.so", "stun.so", "turn.so", "ice.so",
                   "menu.so", "ctrl_tcp.so", "rtcpsummary.so"):
        assert module in config
    assert f"aufile,{tmp_path / 'ref.wav'}" in config
    assert f"snd_path                {tmp_path / 'rec'}" in config
    assert "sip_listen              100.64.1.2:5060" in config
    assert "ctrl_tcp_listen         127.0.0.1:4444" in config
    assert render_contacts(_side(tmp_path)) == '"callee" <sip:callee@198.18.3.2>\n'
    assert render_contacts(_side(tmp_path, "callee")) == ""
    assert dial_uri(Endpoint("198.18.3.2", 5060)) == "sip:callee@198.18.3.2"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("strategy", "turn-tcp", "a SIP call takes strategy direct or turn-udp"),
    ("listen_ip", "100.64.1.2;x=1", "not an IP address"),
    ("turn_password", 'pa"ss', "only letters"),
    ("turn_username", "a;b", "only letters"),
    ("audio", Path("/tmp/with space.wav"), "absolute path"),
    ("recordings", Path("relative"), "absolute path"),
    ("role", "proxy", "role must be"),
    ("ctrl_port", 0, "port 0"),
])
def test_a_value_that_could_break_a_file_is_refused(tmp_path: Path, field: str, value: Any,
                                                    message: str) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(_side(tmp_path), **changes)


def test_the_accounts_file_with_the_turn_password_is_private(tmp_path: Path) -> None:
    directory = write_side(_side(tmp_path, strategy="turn-udp"), tmp_path / "caller")
    assert (directory / ACCOUNTS_NAME).stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in directory.iterdir()) == ["accounts", "config", "contacts"]
    assert baresip_argv(directory) == ["baresip", "-v", "-f", str(directory)]


def test_the_wrapper_command_line(tmp_path: Path) -> None:
    side = _side(tmp_path)
    argv = peer_argv("caller", side, tmp_path / "caller", tmp_path, CallSettings(media_s=6.0))
    assert argv[1:3] == ["-m", "harness.calls.sip_peer"]
    assert argv[argv.index("--dial") + 1] == "sip:callee@198.18.3.2"
    assert argv[argv.index("--record") + 1] == str(tmp_path / "caller-received.wav")
    callee = peer_argv("callee", _side(tmp_path, "callee"), tmp_path / "callee", tmp_path,
                       CallSettings(record_audio=False))
    assert "--dial" not in callee and "--record" not in callee


def test_sip_is_a_profile_with_direct_and_turn_udp_and_no_tcp_turn() -> None:
    assert Profile.SIP in CLIENTS and "sip" in PROFILE_DESCRIPTIONS
    assert {"direct", "turn-udp", "wireguard", "shadowsocks"} <= set(PLACEABLE["sip"])
    assert unplaceable("sip", "direct") is None
    for strategy in ("turn-tcp", "turn-tls-443"):
        why = unplaceable("sip", strategy)
        assert why is not None and "baresip 1.0.0 has no TURN over" in why
        with pytest.raises(CallError, match="baresip 1.0.0 has no TURN over"):
            check_strategy("sip", strategy)
    assert CLIENTS[Profile.SIP].tunnel_inner("shadowsocks") == "turn-udp"
    assert CLIENTS[Profile.SIP].tunnel_inner("wireguard") == "direct"


def test_missing_programs_are_named_with_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert missing_profile_tools("sip") == ["baresip (Debian package baresip-core)",
                                            "kamailio (Debian package kamailio)"]


def test_proxy_config_listens_on_tcp_and_refuses_a_bad_address(tmp_path: Path) -> None:
    text = render_proxy_config(Endpoint("198.18.3.2", 5060))
    assert "listen=tcp:198.18.3.2:5060" in text and "fix_nated_contact()" in text
    with pytest.raises(ValueError, match="not an IP address"):
        render_proxy_config(Endpoint("198.18.3.2\nlisten=udp:0.0.0.0", 5060))
    argv = proxy_argv(tmp_path / "kamailio.cfg", tmp_path)
    assert argv[:3] == ["kamailio", "-DD", "-E"]


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="needs kamailio (Debian package "
                    "kamailio)")
def test_kamailio_accepts_the_proxy_config(tmp_path: Path) -> None:
    config = tmp_path / "kamailio.cfg"
    # Its own check mode (-c) parses the script and loads the modules; listen
    # on loopback so that the check needs no lab address.
    config.write_text(render_proxy_config(Endpoint("127.0.0.1", 5060)))
    result = subprocess.run(["kamailio", "-c", "-f", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
