"""The files a SIP call runs from, as pure functions of typed settings: for
each side, baresip's ``config``, ``accounts`` and ``contacts`` (read with
``baresip -f DIR``); for the lab's SIP proxy, a kamailio configuration.

Which baresip this is written for: 1.0.0 (Debian 12, package baresip-core).
What each side loads:

* ``aufile``: the audio source, a WAV file (mono 48 kHz, resampled by baresip
  to the codec's two channels);
* ``sndfile``: an audio filter that writes the decoded received audio to
  ``snd_path/dump-<time>-dec.wav`` (and the sent audio to ``-enc.wav``); 1.0.0
  has no WAV player module, and no player is needed: the filter sits in the
  receive path, so nothing is played, everything decoded is written;
* ``opus``: the only codec (``audio_codecs=opus/48000/2``), mono, 20 ms frames;
* ``ice`` + ``stun`` (strategy ``direct``): ICE with host and server-reflexive
  candidates from the lab's STUN server;
* ``turn`` (strategy ``turn-udp``): baresip's TURN media-NAT, which allocates
  a relay on the lab's coturn over UDP and puts the relayed address in the SDP:
  every media packet goes through the relay, with no ICE checks. Relay-only ICE
  cannot be asked of 1.0.0's ``ice`` module: given a TURN server it gathers host
  and reflexive candidates too, and between two 1.0.0 peers in the lab it did not
  even reach media (the caller judged the answer "ICE not supported by peer",
  fell back to TURN channels and sent no packet);
* ``ctrl_tcp`` + ``menu``: the control interface (JSON in netstrings on
  127.0.0.1 in the host's namespace: ``dial``, ``hangup``, ``audio_debug``;
  events such as ``CALL_ESTABLISHED``, ``CALL_RTCP`` with RTCP statistics and
  ``CALL_CLOSED``). ``menu`` provides the commands; without it ``dial`` is
  "command not found";
* ``rtcpsummary`` and ``rtp_stats yes``: a summary of the RTP/RTCP figures
  printed when the call's stream ends.

SIP: both sides use the lab's signalling host as their proxy, over TCP (port
5060): the callee registers there, the caller sends its INVITE there, and
kamailio (registrar + record-routing proxy, with nathelper rewriting the
NATed contacts to the addresses it saw) relays every request of the dialog.
Neither subscriber can reach the other directly: both sit behind NATs that
drop unsolicited inbound traffic.

Nothing here is a shell string: each value is checked to be a plain address,
port, token or path before it goes into a file (ValueError otherwise).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from harness.netns.endpoint import Endpoint
from harness.spec.names import Strategy

BARESIP = "baresip"
KAMAILIO = "kamailio"
# (program, Debian package) of what a SIP call runs.
SIP_TOOLS: tuple[tuple[str, str], ...] = ((BARESIP, "baresip-core"), (KAMAILIO, "kamailio"))
BARESIP_MODULE_PATH = "/usr/lib/baresip/modules"

SIP_PORT = 5060
CTRL_PORT = 4444
CTRL_HOST = "127.0.0.1"
FRAME_MS = 20
CODEC = "opus/48000/2"
CONFIG_NAME = "config"
ACCOUNTS_NAME = "accounts"
CONTACTS_NAME = "contacts"
PROXY_CONFIG_NAME = "kamailio.cfg"
# The callee's registration lifetime: longer than any call.
REGISTER_INTERVAL_S = 600

# The media-NAT module each SIP strategy uses (see the module docstring).
MEDIA_NAT: dict[str, str] = {Strategy.DIRECT: "ice", Strategy.TURN_UDP: "turn"}

_TOKEN = re.compile(r"[A-Za-z0-9._~+=-]{1,128}")
_UNSAFE_PATH = re.compile(r"[\s;\"'<>,]")


@dataclass(frozen=True)
class SipSide:
    """One side of a SIP call: where it listens, its proxy, its strategy and
    the lab's STUN and TURN servers, the WAV it sends and the directory its
    recorder writes to."""

    role: str
    listen_ip: str
    proxy: Endpoint
    strategy: str
    stun: Endpoint
    turn: Endpoint
    turn_username: str
    turn_password: str
    audio: Path
    recordings: Path
    ctrl_port: int = CTRL_PORT

    def __post_init__(self) -> None:
        if self.role not in ("caller", "callee"):
            raise ValueError(f"role must be caller or callee, got {self.role!r}")
        media_nat(self.strategy)
        for what, ip in (("listen_ip", self.listen_ip), ("proxy", self.proxy.host),
                         ("stun", self.stun.host), ("turn", self.turn.host)):
            _check_ip(what, ip)
        for what, port in (("proxy", self.proxy.port), ("stun", self.stun.port),
                           ("turn", self.turn.port), ("ctrl_port", self.ctrl_port)):
            if not 0 < port < 65536:
                raise ValueError(f"{what}: port {port} is not 1-65535")
        for what, token in (("turn_username", self.turn_username),
                            ("turn_password", self.turn_password)):
            if not _TOKEN.fullmatch(token):
                raise ValueError(f"{what}: only letters, digits and ._~+=- are allowed")
        for what, path in (("audio", self.audio), ("recordings", self.recordings)):
            _check_path(what, path)


def media_nat(strategy: str) -> str:
    """The baresip media-NAT module of a SIP strategy; ValueError for one a
    SIP call cannot take."""
    try:
        return MEDIA_NAT[strategy]
    except KeyError:
        raise ValueError(f"a SIP call takes strategy {' or '.join(MEDIA_NAT)}, "
                         f"not {strategy!r}") from None


def aor(role: str, proxy: Endpoint) -> str:
    """A side's address of record, at the proxy's domain (its address)."""
    return f"sip:{role}@{proxy.host}"


def dial_uri(proxy: Endpoint) -> str:
    """What the caller dials: the callee's address of record. baresip adds the
    account's ``transport=tcp`` itself."""
    return aor("callee", proxy)


def render_config(side: SipSide) -> str:
    """baresip's ``config`` for one side."""
    lines = [
        ("poll_method", "epoll"),
        ("sip_listen", f"{side.listen_ip}:{SIP_PORT}"),
        ("call_local_timeout", "60"),
        ("call_max_calls", "1"),
        ("audio_source", f"aufile,{side.audio}"),
        ("ausrc_srate", "48000"),
        ("ausrc_channels", "1"),
        ("audio_buffer", "20-160"),
        ("rtcp_mux", "no"),
        ("jitter_buffer_delay", "5-10"),
        ("rtp_stats", "yes"),
        ("module_path", BARESIP_MODULE_PATH),
        ("module", "aufile.so"),
        ("module", "sndfile.so"),
        ("module", "opus.so"),
        ("module", "stun.so"),
        ("module", "turn.so"),
        ("module", "ice.so"),
        ("module_app", "account.so"),
        ("module_app", "menu.so"),
        ("module_app", "contact.so"),
        ("module_app", "ctrl_tcp.so"),
        ("module_app", "rtcpsummary.so"),
        ("ctrl_tcp_listen", f"{CTRL_HOST}:{side.ctrl_port}"),
        ("snd_path", str(side.recordings)),
        ("opus_stereo", "no"),
        ("opus_sprop_stereo", "no"),
    ]
    return "".join(f"{key:<24}{value}\n" for key, value in lines)


def render_accounts(side: SipSide) -> str:
    """baresip's ``accounts``: one account at the proxy, over TCP; the callee
    registers and answers by itself, the caller does not register."""
    params = [f"regint={REGISTER_INTERVAL_S if side.role == 'callee' else 0}",
              f"audio_codecs={CODEC}", f"ptime={FRAME_MS}",
              f"medianat={media_nat(side.strategy)}"]
    if side.role == "callee":
        params.append("answermode=auto")
    if side.strategy == Strategy.TURN_UDP:
        params += [f'stunserver="turn:{side.turn.host}:{side.turn.port}"',
                   f"stunuser={side.turn_username}", f"stunpass={side.turn_password}"]
    else:
        params.append(f'stunserver="stun:{side.stun.host}:{side.stun.port}"')
    return f"<{aor(side.role, side.proxy)};transport=tcp>;" + ";".join(params) + "\n"


def render_contacts(side: SipSide) -> str:
    """baresip's ``contacts``: the caller knows the callee."""
    if side.role != "caller":
        return ""
    return f'"callee" <{dial_uri(side.proxy)}>\n'


def write_side(side: SipSide, directory: Path) -> Path:
    """Write one side's three files into `directory` (the accounts file, which
    holds the TURN credentials, readable by root only); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(render_config(side))
    accounts = directory / ACCOUNTS_NAME
    accounts.touch(mode=0o600)
    accounts.chmod(0o600)
    accounts.write_text(render_accounts(side))
    (directory / CONTACTS_NAME).write_text(render_contacts(side))
    return directory


def baresip_argv(config_dir: Path) -> list[str]:
    """baresip for one side: verbose (its ICE state dump, with the selected
    pair, is printed at debug level), configured from `config_dir` only."""
    _check_path("config_dir", config_dir)
    return [BARESIP, "-v", "-f", str(config_dir)]


def render_proxy_config(listen: Endpoint) -> str:
    """kamailio as the lab's SIP registrar and proxy on `listen` (TCP): it
    keeps registrations in memory, record-routes every dialog through itself,
    and rewrites the contact of a REGISTER, an INVITE and a 2xx/183 answer to
    the address the message came from (nathelper), so requests reach both
    subscribers back through their NATs on the connections they opened."""
    _check_ip("listen", listen.host)
    return _PROXY_TEMPLATE.format(listen=f"{listen.host}:{listen.port}")


def proxy_argv(config: Path, workdir: Path) -> list[str]:
    """kamailio in the foreground (-DD), logging to stderr (-E), with its pid
    file and runtime files in `workdir`, small shared and private memory."""
    _check_path("config", config)
    _check_path("workdir", workdir)
    return [KAMAILIO, "-DD", "-E", "-m", "32", "-M", "4", "-f", str(config),
            "-P", str(workdir / "kamailio.pid"), "-Y", str(workdir), "-w", str(workdir)]


def _check_ip(what: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IP address") from None


def _check_path(what: str, path: Path) -> None:
    if not path.is_absolute() or _UNSAFE_PATH.search(str(path)):
        raise ValueError(f"{what}: {str(path)!r} must be an absolute path without spaces, "
                         "quotes or ;,<>")


_PROXY_TEMPLATE = """\
#!KAMAILIO
# The lab's SIP registrar and proxy (harness.calls.sip_config).
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
disable_sctp=yes
listen=tcp:{listen}
alias="{listen}"
tcp_connection_lifetime=3605

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "nathelper.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "received_avp", "$avp(RECEIVED)")
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("rr", "enable_full_lr", 1)

request_route {{
\txlog("L_INFO", "sip: $rm $ru from $si:$sp\\n");
\tif (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
\tforce_rport();
\tif (is_method("REGISTER")) {{
\t\tfix_nated_register();
\t\tif (!save("location")) {{ sl_reply_error(); }}
\t\texit;
\t}}
\tif (is_method("INVITE")) {{ fix_nated_contact(); }}
\tif (has_totag()) {{
\t\tif (loose_route()) {{ t_relay(); exit; }}
\t\tif (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
\t\tsl_send_reply("404", "Not here");
\t\texit;
\t}}
\tif (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
\trecord_route();
\tif (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
\tt_on_reply("NATED_REPLY");
\tt_relay();
}}

onreply_route[NATED_REPLY] {{
\tif (status =~ "(183)|(2[0-9][0-9])") {{ fix_nated_contact(); }}
}}
"""
