"""Voice-call endpoint (aiortc), run as one process per side of a call.

Usage::

    python -m harness.calls.peer --role caller|callee --signal IP:PORT --room ROOM \\
        --strategy direct|turn-udp|turn-tcp|turn-tls-443|gather-all --stun IP:PORT \\
        --turn IP [--turn-port 3478] [--turns-port 443] --turn-user U --turn-pass P \\
        --audio ref.wav --media-seconds 8 --setup-timeout 20 --out result.json \\
        [--record received.wav] [--total-timeout S] [--linger S] [--host-ip IP ...] \\
        [--ca-file ca.pem] [--stall-timeout S] [--events events.jsonl]

Both sides send the reference WAV (looped, Opus only) and decode what they
receive. Signalling goes through :mod:`harness.services.signalling`: both sides
join the room, the callee announces ``{"ready": true}``, and the caller makes the
(non-trickle) offer as soon as it knows that the other side is in the room
(``joined.peers == 2``, ``peer_joined`` or ``ready``), so start order does not
matter.

Timeouts: ``--setup-timeout`` counts from process start and bounds everything
up to the first decoded audio frame (signalling, waiting for the peer,
gathering, ICE, DTLS, first media). ``--total-timeout`` bounds the whole run
(default: setup + media + linger + 10 s). ``--stall-timeout`` (default 3 s) ends
the media window early with ``media-stalled`` when no audio frame is decoded
for that long. ``--events`` appends progress events (attempt, first media,
failure; monotonic clock) as JSON lines, so a harness can act at a given
moment of the call. Whatever happens, the result JSON
(:class:`PeerResult`) is written to ``--out``; the exit status is 0 when the
call worked or failed for a network reason, 1 when a result was written with
``error="internal-error: ..."`` (a bug), 2 for bad arguments.

TLS (``turn-tls-443``): aioice opens the ``turns:`` connection with Python's
default SSL context, which verifies the relay's certificate against
``SSL_CERT_FILE``. The process that starts the peer must therefore set
``SSL_CERT_FILE=<per-run ca.pem>`` in the peer's environment, or pass
``--ca-file ca.pem`` (which sets that variable inside the process before any
TLS connection). The relay's certificate must carry the relay IP as an IP SAN
(see :mod:`harness.services.pki`).

``--host-ip`` restricts the host candidates to the given local addresses (by
default aioice uses every address except 127.0.0.1). It is needed for loopback
tests and can pin a lab host to its data-plane interface.

Modules (each imports only the ones listed before it):

- :mod:`.result`: :class:`PeerResult`, :class:`SelectedPair` and the JSON file;
- :mod:`.config`: :class:`PeerConfig`, the command line and the process environment;
- :mod:`.state`: :class:`CallState`, :class:`CallFailed`, :class:`StatsSample`,
  :class:`AudioSink` and the setup deadline;
- :mod:`.connection`: the RTCPeerConnection, gathering and candidate checks;
- :mod:`.negotiation`: signalling and the caller's and callee's offer/answer flows;
- :mod:`.stats`: stats sampling and building the result;
- :mod:`.media`: the first decoded frame and the media window;
- :mod:`.run`: orchestration (:func:`run_peer`, :func:`main`); ``__main__`` runs it.
"""

from harness.calls.peer.config import (
    ROLES,
    STALL_TIMEOUT_S,
    TOTAL_MARGIN_S,
    PeerConfig,
    apply_environment,
    parse_config,
)
from harness.calls.peer.connection import (
    check_local_candidates,
    create_peer_connection,
    gather,
    local_candidate_count,
    open_player,
    prefer_opus,
    relay_connection_lost,
    set_remote,
)
from harness.calls.peer.media import end_window, media_window, wait_first_media, watch_window
from harness.calls.peer.negotiation import (
    callee_flow,
    caller_flow,
    connect_signalling,
    join_room,
    next_message,
    send_message,
    wait_for_answer,
    wait_for_offer,
    wait_for_peer,
)
from harness.calls.peer.result import PeerResult, SelectedPair
from harness.calls.peer.run import (
    CLOSE_TIMEOUT_S,
    EXIT_BAD_ARGS,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_WATCHDOG_S,
    exit_code,
    finish,
    main,
    run_call,
    run_peer,
    start_exit_watchdog,
    supervise,
    teardown,
)
from harness.calls.peer.state import (
    AudioSink,
    CallFailed,
    CallState,
    EventLog,
    StatsSample,
    current_stage,
    within_setup,
)
from harness.calls.peer.stats import (
    DEFAULT_CLOCKRATE,
    STATS_TIMEOUT_S,
    apply_connection,
    apply_stats,
    apply_window,
    build_result,
    candidate_counts,
    failed_at,
    negotiated_codec,
    relay_transport,
    safe_build_result,
    sample_stats,
    selected_pair,
    stats_from_report,
)

__all__ = [
    "CLOSE_TIMEOUT_S",
    "DEFAULT_CLOCKRATE",
    "EXIT_BAD_ARGS",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_WATCHDOG_S",
    "ROLES",
    "STALL_TIMEOUT_S",
    "STATS_TIMEOUT_S",
    "TOTAL_MARGIN_S",
    "AudioSink",
    "CallFailed",
    "CallState",
    "EventLog",
    "PeerConfig",
    "PeerResult",
    "SelectedPair",
    "StatsSample",
    "apply_connection",
    "apply_environment",
    "apply_stats",
    "apply_window",
    "build_result",
    "callee_flow",
    "caller_flow",
    "candidate_counts",
    "check_local_candidates",
    "connect_signalling",
    "create_peer_connection",
    "current_stage",
    "end_window",
    "exit_code",
    "failed_at",
    "finish",
    "gather",
    "join_room",
    "local_candidate_count",
    "main",
    "media_window",
    "negotiated_codec",
    "next_message",
    "open_player",
    "parse_config",
    "prefer_opus",
    "relay_connection_lost",
    "relay_transport",
    "run_call",
    "run_peer",
    "safe_build_result",
    "sample_stats",
    "selected_pair",
    "send_message",
    "set_remote",
    "start_exit_watchdog",
    "stats_from_report",
    "supervise",
    "teardown",
    "wait_first_media",
    "wait_for_answer",
    "wait_for_offer",
    "wait_for_peer",
    "watch_window",
    "within_setup",
]
