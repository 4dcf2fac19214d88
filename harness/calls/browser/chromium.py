"""Chromium as a call endpoint: where its program is, the command line one
call runs it with, starting it with the DevTools pipe, and what it cost.

The command line (:func:`chromium_argv`), flag by flag:

- ``--headless=new``: the full browser without a window (the same media
  stack as a desktop Chromium, not the old headless shell).
- ``--remote-debugging-pipe``: DevTools over file descriptors 3 and 4
  (harness.calls.browser.cdp), no listening port.
- ``--no-sandbox``: the lab runs as root, and Chromium refuses to start as
  root with its sandbox ("Running as root without --no-sandbox is not
  supported"). The page it loads is callwall's own, served from the driver.
- ``--user-data-dir=<call dir>/<role>-chromium``: a fresh profile per call, so
  no state (permissions, caches) carries from one call to the next; the
  SPKI allow-list below is only honoured with an explicit user-data-dir.
- ``--use-fake-device-for-media-stream --use-fake-ui-for-media-stream
  --use-file-for-fake-audio-capture=<ref.wav>``: the microphone is the
  reference WAV (looped), granted without a prompt; voice processing is off
  through the page's getUserMedia constraints (echoCancellation,
  noiseSuppression and autoGainControl false).
- ``--autoplay-policy=no-user-gesture-required``: the received audio plays
  (and the AudioContext that records it runs) without a user gesture.
- ``--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE <addresses>``: every name
  fails to resolve, so the browser never sends a DNS query out of the lab
  host; the page's own address and the lab's service addresses are excluded
  (without EXCLUDE the rule applies to IP literals too and the page never
  loads).
- ``--ignore-certificate-errors-spki-list=<pins>``: Chromium verifies the
  relay's certificate for ``turns:`` against its own trust store, not
  ``SSL_CERT_FILE``; the run's CA is in neither, so the relay's key is pinned:
  the base64 SHA-256 of its SubjectPublicKeyInfo (and the CA's). A relay with
  any other key still fails verification. (The other way, importing the CA into
  an NSS database in the profile, needs certutil from libnss3-tools.)
- ``--disable-features=WebRtcHideLocalIpsWithMdns``: host candidates carry
  the lab address instead of a random ``.local`` name, which the far side
  (the aiortc peer, or a browser behind a NAT) could not resolve; the page
  opens the microphone only once the transport is up, so the permission that
  would otherwise reveal the address comes too late for the offer.
- No host-candidate pinning inside a tunnel (the aiortc peer's --host-ip):
  Chromium gathers on every interface (``--force-webrtc-ip-handling-policy=
  default_public_interface_only`` did not change that in Chromium 156), but
  a full tunnel has taken the default route, so every candidate's traffic
  leaves through it (in the lab, both server-reflexive candidates of a
  wireguard call were the VPN exit's address).
- Quiet: no first-run, component updates, background networking, sync,
  crash reporting or domain reliability uploads, so the only traffic the
  browser sends through the censor is the call's.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

# Debian's /usr/bin/chromium is a shell script that adds its own flags (from
# /etc/chromium.d) and then runs this program; callwall runs it directly.
DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")
PROGRAM_NAMES = ("chromium", "chromium-browser")
# The program and the Debian package it comes from (the matrix skips browser
# cells where it is missing, and says so).
TOOL = ("chromium", "chromium")
PAGE_HOST = "127.0.0.1"
_F_DUPFD = 0
_PR_SET_PDEATHSIG = 1
# The descriptors Chromium's DevTools pipe uses: it reads 3 and writes 4.
_CDP_IN_FD = 3
_CDP_OUT_FD = 4
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ChromiumError(RuntimeError):
    """Chromium is missing or did not start."""


def chromium_binary() -> Path | None:
    """The Chromium program to run, or None where there is none."""
    if DEBIAN_BINARY.is_file() and os.access(DEBIAN_BINARY, os.X_OK):
        return DEBIAN_BINARY
    for name in PROGRAM_NAMES:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    return None


def missing_chromium() -> list[str]:
    """['chromium (Debian package chromium)'] where no Chromium can run, else []."""
    program, package = TOOL
    return [] if chromium_binary() is not None else [f"{program} (Debian package {package})"]


def spki_pin(cert_pem: Path) -> str:
    """The base64 SHA-256 of a certificate's SubjectPublicKeyInfo: the form
    --ignore-certificate-errors-spki-list takes."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@dataclass(frozen=True)
class ChromiumSetup:
    """What one browser of a call runs with."""

    binary: Path
    profile_dir: Path
    fake_audio: Path
    resolver_exclude: Sequence[str] = ()
    spki_pins: Sequence[str] = ()


QUIET_FLAGS = (
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-sync",
    "--disable-domain-reliability", "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-extensions", "--metrics-recording-only", "--password-store=basic",
    "--disable-gpu", "--mute-audio",
)
DISABLED_FEATURES = ("WebRtcHideLocalIpsWithMdns", "Translate", "MediaRouter",
                     "OptimizationHints", "DialMediaRouteProvider")


def chromium_argv(setup: ChromiumSetup) -> list[str]:
    """The browser's command line (see the module's docstring)."""
    excluded = ", ".join(f"EXCLUDE {address}" for address in (PAGE_HOST, *setup.resolver_exclude))
    argv = [
        str(setup.binary), "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
        f"--user-data-dir={setup.profile_dir}",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={setup.fake_audio}",
        "--autoplay-policy=no-user-gesture-required",
        f"--host-resolver-rules=MAP * ~NOTFOUND, {excluded}",
        f"--disable-features={','.join(DISABLED_FEATURES)}",
        *QUIET_FLAGS,
    ]
    if setup.spki_pins:
        argv.append(f"--ignore-certificate-errors-spki-list={','.join(setup.spki_pins)}")
    argv.append("about:blank")
    return argv


@dataclass
class Launched:
    """A running browser and this process's ends of its DevTools pipe."""

    process: subprocess.Popen[bytes]
    read_fd: int
    write_fd: int
    started_monotonic: float


def launch(argv: Sequence[str], log: Path) -> Launched:
    """Start Chromium with its DevTools pipe on descriptors 3 (commands in) and
    4 (replies out). It gets SIGKILL if this process dies (PR_SET_PDEATHSIG),
    so a driver killed mid-call does not leave a browser sending media; its
    own child processes end with it. Call from the main thread, before any
    other thread exists (the death signal follows the thread that started it,
    and the descriptors are placed between fork and exec)."""
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def in_child() -> None:  # runs between fork and exec
        high_in = fcntl.fcntl(commands_read, _F_DUPFD, 10)
        high_out = fcntl.fcntl(replies_write, _F_DUPFD, 10)
        os.dup2(high_in, _CDP_IN_FD)
        os.dup2(high_out, _CDP_OUT_FD)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    try:
        with open(log, "ab") as log_file:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                pass_fds=(_CDP_IN_FD, _CDP_OUT_FD), preexec_fn=in_child)
    except OSError as exc:
        for fd in (commands_read, commands_write, replies_read, replies_write):
            os.close(fd)
        raise ChromiumError(f"cannot start {argv[0]}: {exc}") from exc
    os.close(commands_read)
    os.close(replies_write)
    return Launched(process, replies_read, commands_write, time.monotonic())


def stop(process: subprocess.Popen[bytes], grace_s: float = 3.0) -> None:
    """SIGTERM (Chromium then ends its child processes), SIGKILL after `grace_s`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=grace_s)


# ------------------------------------------------------------------ what it cost


@dataclass
class ResourceUse:
    """What one browser (its main process and every descendant) used during a
    call, sampled from /proc: resident memory as ``ps`` counts it (RSS summed
    over the processes, which counts shared pages once per process) and
    proportional set size (PSS, shared pages divided among their users: the
    browser's real share of memory), both at their peak; CPU seconds (user +
    system) of every process seen; the number of processes at the peak."""

    samples: int = 0
    rss_peak_mb: float = 0.0
    pss_peak_mb: float | None = None
    processes_peak: int = 0
    # (pid, start ticks) -> CPU ticks last seen: a process that exits keeps its share.
    cpu_ticks: dict[tuple[int, int], int] = field(default_factory=dict)
    # CPU seconds and wall time of the media window alone (mark_window).
    window_cpu_s: float | None = None
    window_wall_s: float | None = None
    _window_start: tuple[float, float] | None = None

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / _CLK_TCK

    def sample(self, root_pid: int) -> None:
        pids = process_tree(root_pid)
        rss_pages = 0
        pss_kb: int | None = 0
        for pid in pids:
            stat = _stat_fields(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            start_ticks, cpu = int(stat[19]), int(stat[11]) + int(stat[12])
            self.cpu_ticks[(pid, start_ticks)] = cpu
            rss_pages += int(stat[21])
            pss = _pss_kb(pid)
            pss_kb = None if pss is None or pss_kb is None else pss_kb + pss
        self.samples += 1
        self.processes_peak = max(self.processes_peak, len(pids))
        self.rss_peak_mb = max(self.rss_peak_mb, rss_pages * _PAGE_SIZE / 2**20)
        if pss_kb is not None:
            self.pss_peak_mb = max(self.pss_peak_mb or 0.0, pss_kb / 1024)

    def mark_window(self, root_pid: int, end: bool = False) -> None:
        """Sample at the start (or the `end`) of the media window."""
        self.sample(root_pid)
        now = time.monotonic()
        if not end:
            self._window_start = (now, self.cpu_s)
        elif self._window_start is not None:
            self.window_wall_s = now - self._window_start[0]
            self.window_cpu_s = self.cpu_s - self._window_start[1]

    def to_dict(self, wall_s: float) -> dict[str, float | int | None]:
        window_pct = (round(100.0 * self.window_cpu_s / self.window_wall_s, 1)
                      if self.window_cpu_s is not None and self.window_wall_s else None)
        return {
            "samples": self.samples,
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "pss_peak_mb": None if self.pss_peak_mb is None else round(self.pss_peak_mb, 1),
            "processes_peak": self.processes_peak,
            "cpu_s": round(self.cpu_s, 2),
            "wall_s": round(wall_s, 2),
            "cpu_pct_of_core": round(100.0 * self.cpu_s / wall_s, 1) if wall_s > 0 else None,
            "window_cpu_s": None if self.window_cpu_s is None else round(self.window_cpu_s, 2),
            "window_cpu_pct_of_core": window_pct,
        }


def process_tree(root_pid: int) -> list[int]:
    """`root_pid` and all its descendants (from /proc/<pid>/stat's parent field)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat_fields(int(entry.name))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, so index i is field i + 3."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
