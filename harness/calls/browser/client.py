"""The browser call clients: Chromium (headless, driven over the DevTools
protocol) placing the call, with the same ICE strategies and the same
tunnels as the aiortc client (profile ``webrtc``).

Two profiles, because the far side is part of what is measured:

- ``browser``: Chromium calls Chromium. Both ends gather, pair and
  nominate candidates the way a browser does.
- ``browser-aiortc``: Chromium calls the aiortc peer (caller in the browser,
  callee aiortc): a browser subscriber calling a non-browser client, which
  is how most calls between a web app and a native app look.

A profile, not a callee option: expectations (a policy's ``expect:`` block),
matrices and records are keyed by profile and strategy, so each pairing gets
its own cells and its own expectation without a new field in any spec.

Each browser side is one driver process (harness.calls.browser.driver)
started in its lab host by harness.calls.procs.run_peers, like the aiortc
peer; the driver starts Chromium and records it in the lab's registry."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.calls.base import CallError, CallOutput, CallSettings
from harness.calls.browser.chromium import missing_chromium, spki_pin
from harness.calls.procs import reference_audio, run_peers
from harness.calls.webrtc import peer_argv
from harness.faults import Fault
from harness.spec.names import Profile, Role
from harness.testbed import Lab
from harness.tunnels import inner_strategy
from harness.tunnels.base import TunnelledEndpoints

DRIVER_MODULE = "harness.calls.browser"
PEER_MODULE = "harness.calls.peer"
# harness.services.pki.issue_run_certificates writes the relay's certificate
# next to the run's CA under this name.
RELAY_CERT = "server.pem"
BROWSER_PROFILES: tuple[Profile, ...] = (Profile.BROWSER, Profile.BROWSER_AIORTC)


class BrowserClient:
    """Chromium as the caller; Chromium or the aiortc peer as the callee."""

    def __init__(self, profile: Profile) -> None:
        if profile not in BROWSER_PROFILES:
            raise ValueError(f"{profile} is not a browser profile")
        self.profile = profile

    def in_browser(self, role: str) -> bool:
        return role == Role.CALLER or self.profile == Profile.BROWSER

    def tunnel_inner(self, tunnel: str) -> str:
        return inner_strategy(tunnel)

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        missing = missing_chromium()
        if missing:
            raise CallError(f"profile {self.profile} needs {', '.join(missing)}")
        audio = reference_audio(lab)
        room = f"{lab.run_id}-{call_dir.name}"

        def argv(role: str) -> list[str]:
            theirs = endpoints if role == Role.CALLER else None
            peer = peer_argv(lab, role, strategy, room, audio, call_dir, settings, theirs)
            return browser_argv(lab, role, call_dir, peer, theirs) if self.in_browser(role) \
                else peer

        return run_peers(lab, argv, call_dir, settings, fault, strategy)


def browser_argv(lab: Lab, role: str, call_dir: Path, peer: list[str],
                 endpoints: TunnelledEndpoints | None = None) -> list[str]:
    """The driver's command line: its own options, then the aiortc peer's
    (`peer`, from harness.calls.webrtc.peer_argv), which it takes unchanged."""
    head = [sys.executable, "-m", PEER_MODULE]
    if peer[:3] != head:
        raise CallError(f"the aiortc peer's command line no longer starts with {head}")
    services = lab.services
    assert services is not None, "the lab's services are not running"
    addresses = {services.relay_ip, services.stun_ip, services.signalling_ip}
    if endpoints is not None and endpoints.turn is not None:
        addresses.add(endpoints.turn.host)
    argv = [sys.executable, "-m", DRIVER_MODULE,
            "--profile-dir", str(call_dir / f"{role}-chromium-profile"),
            "--chromium-log", str(call_dir / f"{role}-chromium.log"),
            "--registry-dir", str(lab.registry.dir),
            "--lab-host", lab.host_with_role(role).name,
            "--spki-pin", spki_pin(Path(services.ca_file).parent / RELAY_CERT)]
    for address in sorted(addresses):
        argv += ["--resolver-exclude", address]
    return argv + peer[3:]
