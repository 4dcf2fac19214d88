"""The AmneziaWG-style junk shim: the transform, its inverse, and what the
censor's WireGuard signature sees of a handshake after it."""

from __future__ import annotations

import random
import select
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.censor.signatures import matches
from harness.spec.policy import Signature
from harness.tunnels import junkshim
from harness.tunnels.junkshim import (
    INITIATION_SIZE,
    RESPONSE_SIZE,
    ClientShim,
    JunkCodec,
    JunkParams,
    ServerShim,
)

WIREGUARD = Signature(kind="wireguard")
WG_PORT = 51820


def wg_message(kind: int, size: int, seed: int) -> bytes:
    """A WireGuard message as on the wire: type, 3 reserved zero bytes, then
    (for this test, random) fields: 148 B initiation, 92 B response, 32+ B data."""
    body = random.Random(seed).randbytes(size - 4)
    return struct.pack("<I", kind) + body


INITIATION = wg_message(1, INITIATION_SIZE, 1)
RESPONSE = wg_message(2, RESPONSE_SIZE, 2)
COOKIE = wg_message(3, 64, 3)
DATA = wg_message(4, 16 + 16 + 96, 4)


def codec(seed: int = 7, params: JunkParams | None = None) -> JunkCodec:
    return JunkCodec(params or JunkParams(), random.Random(seed))


def test_plain_handshake_matches_the_wireguard_signature() -> None:
    # The reference itself, so that "does not match" below means something.
    assert matches(WIREGUARD, INITIATION, "udp", WG_PORT)
    assert matches(WIREGUARD, RESPONSE, "udp", WG_PORT)


@pytest.mark.parametrize("message", [INITIATION, RESPONSE, COOKIE, DATA],
                         ids=["initiation", "response", "cookie", "data"])
def test_round_trip_restores_every_message(message: bytes) -> None:
    sent = codec().obfuscate(message)
    restored = [codec(99).deobfuscate(d) for d in sent]
    assert [r for r in restored if r is not None] == [message]


def test_initiation_is_preceded_by_jc_junk_packets_of_jmin_to_jmax_bytes() -> None:
    params = JunkParams(jc=5, jmin=10, jmax=20)
    sent = codec(params=params).obfuscate(INITIATION)
    assert len(sent) == 6
    assert all(10 <= len(j) <= 20 for j in sent[:5])
    assert all(codec(params=params).deobfuscate(j) is None for j in sent[:5])
    assert len(sent[5]) == params.s1 + INITIATION_SIZE


def test_after_the_shim_no_handshake_packet_matches_the_wireguard_signature() -> None:
    for seed in range(50):
        for message in (INITIATION, RESPONSE):
            for datagram in codec(seed).obfuscate(message):
                assert not matches(WIREGUARD, datagram, "udp", WG_PORT), datagram[:8].hex()


def test_without_padding_only_the_header_swap_hides_the_handshake() -> None:
    params = JunkParams(jc=0, s1=0, s2=0)
    (initiation,) = codec(params=params).obfuscate(INITIATION)
    assert len(initiation) == INITIATION_SIZE  # the length alone still gives it away
    assert initiation[:4] != INITIATION[:4]
    assert not matches(WIREGUARD, initiation, "udp", WG_PORT)


def test_same_seed_same_bytes() -> None:
    assert codec(3).obfuscate(INITIATION) == codec(3).obfuscate(INITIATION)
    assert codec(3).obfuscate(INITIATION) != codec(4).obfuscate(INITIATION)


def test_headers_are_replaced_by_h1_to_h4() -> None:
    p = JunkParams(jc=0)
    c = codec(params=p)
    assert c.obfuscate(INITIATION)[0][p.s1:p.s1 + 4] == struct.pack("<I", p.h1)
    assert c.obfuscate(RESPONSE)[0][p.s2:p.s2 + 4] == struct.pack("<I", p.h2)
    assert c.obfuscate(COOKIE)[0][:4] == struct.pack("<I", p.h3)
    assert c.obfuscate(DATA)[0][:4] == struct.pack("<I", p.h4)


def test_what_is_not_wireguard_is_neither_sent_nor_accepted() -> None:
    c = codec()
    assert c.obfuscate(b"\x01\x00\x00\x00short") == []
    assert c.deobfuscate(INITIATION) is None  # a plain handshake is not the shim's
    assert c.deobfuscate(b"") is None


@pytest.mark.parametrize("kwargs, field", [
    ({"jc": 129}, "jc"), ({"jmin": 50, "jmax": 40}, "jmin/jmax"),
    ({"s1": 2000}, "s1"), ({"s1": 0, "s2": 56}, "s1/s2"),
    ({"h1": 1}, "h1..h4"), ({"h2": JunkParams().h1}, "h1..h4"),
])
def test_bad_params_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        JunkParams(**kwargs)


def test_params_survive_the_command_line() -> None:
    params = JunkParams(jc=7, s1=3)
    assert JunkParams.from_arg(params.to_arg()) == params
    with pytest.raises(ValueError, match="--params"):
        JunkParams.from_arg("1,2,3")


def test_shim_pair_carries_wireguard_messages_over_loopback() -> None:
    """Real sockets: a stand-in 'wireguard' behind the server shim echoes what
    arrives; what the client's 'wireguard' gets back is the exact message."""
    wg_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wg_server.bind(("127.0.0.1", 0))
    wire = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wire.bind(("127.0.0.1", 0))
    server_addr = wire.getsockname()
    wire.close()  # a free port for the server shim
    server = ServerShim(JunkCodec(JunkParams()), server_addr, wg_server.getsockname())
    threading.Thread(target=server.serve, daemon=True).start()
    client_listen = ("127.0.0.1", _free_port())
    client = ClientShim(JunkCodec(JunkParams()), client_listen, server_addr)
    threading.Thread(target=client.serve, daemon=True).start()
    wg_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wg_client.settimeout(3)
    wg_server.settimeout(3)
    for message in (INITIATION, DATA):
        wg_client.sendto(message, client_listen)
        arrived, peer = wg_server.recvfrom(2048)
        assert arrived == message
        reply = RESPONSE if message == INITIATION else DATA
        wg_server.sendto(reply, peer)
        assert wg_client.recv(2048) == reply


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@settings(max_examples=200, deadline=None)
@given(jc=st.integers(0, 8), jmin=st.integers(1, 60), extra=st.integers(0, 60),
       s1=st.integers(0, 300), s2=st.integers(0, 300), seed=st.integers(0, 2**32),
       kind=st.sampled_from([(1, 148), (2, 92), (3, 64), (4, 32), (4, 1452)]))
def test_any_valid_params_round_trip(jc: int, jmin: int, extra: int, s1: int, s2: int,
                                     seed: int, kind: tuple[int, int]) -> None:
    if s1 + INITIATION_SIZE == s2 + RESPONSE_SIZE:
        s2 += 1
    params = JunkParams(jc=jc, jmin=jmin, jmax=jmin + extra, s1=s1, s2=s2)
    message = wg_message(kind[0], kind[1], seed)
    sent = JunkCodec(params, random.Random(seed)).obfuscate(message)
    receiver = JunkCodec(params, random.Random(0))
    assert [m for m in map(receiver.deobfuscate, sent) if m is not None] == [message]
    assert not any(matches(WIREGUARD, d, "udp", WG_PORT) for d in sent)


SHIM = Path(junkshim.__file__)


def _by_path(*args: str) -> list[str]:
    """As wireguard.py starts the shim (by path), but with no site-packages
    (-I -S): it must not need an installed callwall to find harness.netns."""
    return [sys.executable, "-I", "-S", str(SHIM), *args]


def test_run_by_path_a_bad_endpoint_is_named(tmp_path: Path) -> None:
    result = subprocess.run(_by_path("client", "--listen", "127.0.0.1", "--forward",
                                     "127.0.0.1:9", "--params", JunkParams().to_arg()),
                            capture_output=True, text=True, timeout=20, cwd=tmp_path)
    assert result.returncode == 2
    assert "argument --listen: expected IP:PORT, got '127.0.0.1'" in result.stderr


def test_run_by_path_the_server_shim_comes_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(_by_path("server", "--listen", f"127.0.0.1:{_free_port()}",
                                     "--forward", f"127.0.0.1:{WG_PORT}",
                                     "--params", JunkParams().to_arg()),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else b""
        assert line == b"junkshim server ready\n", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.communicate()
