"""A real SIP softphone as a call endpoint (profile ``sip``): baresip 1.0.0 as
caller and callee (harness.calls.sip_peer runs and reads it inside each lab
host), kamailio on the lab's signalling host as their SIP registrar and proxy.

Per call, in the call directory's ``sip/``: ``proxy/kamailio.cfg``, and for
each side ``caller/`` and ``callee/`` with baresip's ``config``, ``accounts``
and ``contacts`` (harness.calls.sip_config says what they hold) and
a short directory under the run's files for its recorder (baresip cuts long
file names short). The proxy starts first (this module
waits for its TCP port), then both sides through harness.calls.procs.run_peers,
and the proxy is stopped when they are done.

Strategies (harness.spec.names.PLACEABLE): ``direct`` (ICE with STUN) and
``turn-udp`` (baresip's TURN media-NAT: relay only, no ICE). baresip 1.0.0
has no TURN over TCP or TLS (a ``?transport=tcp`` in its TURN URI is
ignored), so ``turn-tcp`` and ``turn-tls-443`` are not placeable. The tunnels
carry it like the webrtc client: a full tunnel a ``direct`` call, shadowsocks
and split-route a ``turn-udp`` one (the caller's TURN server replaced by the
tunnel's endpoint).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import wave
from pathlib import Path

from harness.calls.base import CallError, CallOutput, CallSettings
from harness.calls.procs import reference_audio, run_peers
from harness.calls.sip_config import (
    MEDIA_NAT,
    PROXY_CONFIG_NAME,
    SIP_PORT,
    SIP_TOOLS,
    SipSide,
    dial_uri,
    proxy_argv,
    render_proxy_config,
    write_side,
)
from harness.faults import Fault
from harness.measure.peer import PeerReport
from harness.netns.endpoint import Endpoint
from harness.netns.process import wait_listening
from harness.spec.names import Profile
from harness.testbed import Lab
from harness.tunnels import inner_strategy
from harness.tunnels.base import TunnelledEndpoints

PROXY_WHAT = "sip proxy"
PROXY_READY_S = 10.0
LOG_TAIL_CHARS = 600


def missing_sip_tools() -> list[str]:
    """The programs a SIP call needs that this machine lacks, each as
    'program (Debian package P)'."""
    return [f"{binary} (Debian package {package})" for binary, package in SIP_TOOLS
            if shutil.which(binary) is None]


class SipClient:
    profile = Profile.SIP

    def tunnel_inner(self, tunnel: str) -> str:
        return inner_strategy(tunnel)

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        if strategy not in MEDIA_NAT:
            raise CallError(f"profile sip takes strategy {' or '.join(MEDIA_NAT)} (or a tunnel "
                            f"carrying one), not {strategy!r}")
        call_dir.mkdir(parents=True, exist_ok=True)
        missing = missing_sip_tools()
        if missing:
            return _both_failed(strategy, "tool-missing", f"profile sip needs {', '.join(missing)}",
                                call_dir)
        workdir = call_dir / "sip"
        proxy = _start_proxy(lab, workdir / "proxy", call_dir)
        try:
            if proxy is not None:
                return _both_failed(strategy, "internal-error: the SIP proxy did not start",
                                    proxy, call_dir)
            audio = looped_reference(lab, settings)
            sides = {role: self.side(lab, role, strategy, audio, workdir, settings,
                                     endpoints if role == "caller" else None)
                     for role in ("caller", "callee")}

            def argv(role: str) -> list[str]:
                return peer_argv(role, sides[role], workdir / role, call_dir, settings)

            return run_peers(lab, argv, call_dir, settings, fault, strategy)
        finally:
            lab.registry.stop(PROXY_WHAT)

    def side(self, lab: Lab, role: str, strategy: str, audio: Path, workdir: Path,
             settings: CallSettings, endpoints: TunnelledEndpoints | None) -> SipSide:
        """One side's settings, its files written into `workdir`/`role`."""
        services = lab.services
        assert services is not None, "the lab's services are not running"
        endpoints = endpoints or TunnelledEndpoints()
        host = lab.host_with_role(role)
        listen_ip = endpoints.host_ip or str(lab.topology.address_of(host.name))
        # baresip's recorder builds its file names in a fixed-size buffer: under
        # a long call directory (a pytest tmp path, say) the names are cut short
        # and both dumps land in one file. The run's own directory is short.
        recordings = lab.registry.files / f"sip-{secrets.token_hex(3)}-{role}"
        recordings.mkdir(parents=True, exist_ok=True)
        side = SipSide(role=role, listen_ip=listen_ip,
                       proxy=Endpoint(services.signalling_ip, SIP_PORT), strategy=strategy,
                       stun=Endpoint(services.stun_ip, services.stun_port),
                       turn=endpoints.turn or Endpoint(services.relay_ip, services.turn_port),
                       turn_username=services.turn_username,
                       turn_password=services.turn_password, audio=audio,
                       recordings=recordings)
        write_side(side, workdir / role)
        return side


def peer_argv(role: str, side: SipSide, config_dir: Path, call_dir: Path,
              settings: CallSettings) -> list[str]:
    """The in-host wrapper's command line for one side (run_peers adds --events)."""
    argv = [sys.executable, "-m", "harness.calls.sip_peer", "--role", role,
            "--config-dir", str(config_dir), "--strategy", side.strategy,
            "--recordings", str(side.recordings), "--out", str(call_dir / f"{role}.json"),
            "--media-seconds", str(settings.media_s),
            "--setup-timeout", str(settings.setup_timeout_s),
            "--stall-timeout", str(settings.stall_timeout_s),
            "--baresip-log", str(call_dir / f"{role}-baresip.log")]
    if role == "caller":
        argv += ["--dial", dial_uri(side.proxy)]
    if settings.record_audio:
        argv += ["--record", str(call_dir / f"{role}-received.wav")]
    return argv


def looped_reference(lab: Lab, settings: CallSettings) -> Path:
    """The reference audio repeated for longer than any call can last: baresip's
    aufile source ends the call at the end of its file, and the PESQ scoring
    (harness.measure.pesq_score) takes what was sent as the reference looped."""
    reference = reference_audio(lab)
    with wave.open(str(reference), "rb") as handle:
        params = handle.getparams()
        frames = handle.readframes(handle.getnframes())
    seconds = params.nframes / params.framerate if params.framerate else 0.0
    if seconds <= 0:
        raise CallError(f"{reference}: empty reference audio")
    loops = int(settings.budget_s // seconds) + 2
    path = lab.registry.files / f"sip-{reference.stem}-x{loops}.wav"
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        with wave.open(str(tmp), "wb") as out:
            out.setparams(params)
            out.writeframes(frames * loops)
        tmp.replace(path)
    return path


def _start_proxy(lab: Lab, workdir: Path, call_dir: Path) -> str | None:
    """Start kamailio on the signalling host; None once it listens, else why not."""
    services = lab.services
    assert services is not None, "the lab's services are not running"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / PROXY_CONFIG_NAME
    config.write_text(render_proxy_config(Endpoint(services.signalling_ip, SIP_PORT)))
    host = lab.host_with_role("signalling")
    log = call_dir / "sip-proxy.log"
    proc = host.start(proxy_argv(config, workdir), what=PROXY_WHAT, log=log)
    missing = wait_listening(proc.pid, [("tcp", SIP_PORT)], PROXY_READY_S,
                             probe=host.listening_ports, running=lambda: proc.poll() is None)
    if not missing:
        return None
    tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log.exists() else ""
    return f"kamailio is not listening on TCP {SIP_PORT} in {host.name}: {tail.strip()}"


def _both_failed(strategy: str, error: str, detail: str, call_dir: Path) -> CallOutput:
    peers = [PeerReport(role=role, strategy=strategy, profile=Profile.SIP, error=error,
                        failure_stage="process", detail=detail) for role in ("caller", "callee")]
    return CallOutput(caller=peers[0], callee=peers[1], directory=call_dir)
