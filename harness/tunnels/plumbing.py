"""What every tunnel does to a lab, recorded so that it can be undone exactly.

A tunnel starts programs (recorded in the run's registry under a name that
carries the tunnel's own label, so `down` stops those and no others), adds
routes and nftables tables inside lab namespaces, and relies on interfaces
its programs create. `Plumbing.undo` removes all of it in reverse order, by
the names it recorded, never by a pattern.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.logtail import log_tail
from harness.netns.host import HostCommandError, LabHost
from harness.testbed import Lab
from harness.tunnels.base import TunnelError

POLL_S = 0.05
NFT_TABLE_PREFIX = "cwtun_"
IFF_UP = 0x1


@dataclass
class Started:
    host: LabHost
    what: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class _Route:
    host: LabHost
    dst: str
    gateway: str | None
    oif: str | None


@dataclass
class Plumbing:
    """One tunnel's footprint in the lab: its label names all it owns."""

    lab: Lab
    label: str
    workdir: Path
    started: list[Started] = field(default_factory=list)
    routes: list[_Route] = field(default_factory=list)
    tables: list[tuple[LabHost, str]] = field(default_factory=list)
    links: list[tuple[LabHost, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def start(self, host: LabHost, argv: Sequence[str], *, what: str,
              env: Mapping[str, str] | None = None) -> Started:
        """Start a tool, recorded as `tunnel <label> <what>`; log in the workdir."""
        log = self.workdir / f"{host.name}-{what.replace(' ', '-')}.log"
        owned_what = f"tunnel {self.label} {what}"
        proc = host.start(list(argv), what=owned_what, log=log, env=env)
        started = Started(host, owned_what, proc, log)
        self.started.append(started)
        return started

    def check_alive(self, started: Started) -> None:
        if started.proc.poll() is not None:
            raise TunnelError(f"{started.what} in {started.host.name} exited "
                              f"({started.proc.returncode}); its log says:\n"
                              f"{log_tail(started.log)}")

    def wait_until(self, started: Started, ready: Callable[[], bool], what: str,
                   timeout_s: float = 10.0) -> None:
        """Wait for `ready` while the tool runs; TunnelError with its log otherwise."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.check_alive(started)
            if time.monotonic() >= deadline:
                raise TunnelError(f"{started.what} in {started.host.name}: no {what} after "
                                  f"{timeout_s:.0f} s; its log says:\n{log_tail(started.log)}")
            time.sleep(POLL_S)

    def wait_for_log(self, started: Started, text: str, timeout_s: float = 10.0) -> None:
        def logged() -> bool:
            try:
                return text in started.log.read_text(errors="replace")
            except OSError:
                return False
        self.wait_until(started, logged, f"{text!r} in its log", timeout_s)

    def wait_for_link(self, started: Started, ifname: str, timeout_s: float = 10.0,
                      *, up: bool = False) -> None:
        """Wait for the tool's interface (and, with `up`, for the tool to bring it up)."""
        self.links.append((started.host, ifname))
        ready = (lambda: link_is_up(started.host, ifname)) if up else (
            lambda: link_exists(started.host, ifname))
        self.wait_until(started, ready, f"interface {ifname}" + (" up" if up else ""),
                        timeout_s)

    def add_route(self, host: LabHost, dst: str, *, gateway: str | None = None,
                  oif: str | None = None) -> None:
        with host.netlink() as ns:
            spec: dict[str, object] = {"dst": dst}
            if gateway is not None:
                spec["gateway"] = gateway
            if oif is not None:
                spec["oif"] = ns.link_lookup(ifname=oif)[0]
            ns.route("add", **spec)
        self.routes.append(_Route(host, dst, gateway, oif))

    def add_nft_table(self, host: LabHost, body: str) -> str:
        """Load `table ip <name> { body }` in `host`; the name is the label's."""
        name = f"{NFT_TABLE_PREFIX}{self.label}"
        self.tables.append((host, name))
        host.run(["nft", "-f", "-"], input_text=f"table ip {name} {{\n{body}\n}}\n")
        return name

    def own_file(self, path: Path) -> None:
        """A file a tool creates and may leave behind if killed (e.g. a
        wireguard-go control socket): removed by `undo`, by this exact path."""
        self.files.append(path)

    def write_private(self, name: str, text: str) -> Path:
        """A file only root can read (it may hold keys), in the workdir."""
        path = self.workdir / name
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
        self.files.append(path)
        return path

    def undo(self) -> list[str]:
        """Remove everything recorded, in reverse order; returns what it could
        not remove (empty when all went)."""
        problems: list[str] = []
        for started in reversed(self.started):
            self.lab.registry.stop(started.what)
            _reap(started.proc)
        self.started.clear()
        for route in reversed(self.routes):
            problems += _delete_route(route)
        self.routes.clear()
        for host, table in reversed(self.tables):
            result = host.run(["nft", "delete", "table", "ip", table], check=False)
            if result.returncode != 0 and "No such file" not in result.stderr:
                problems.append(f"{host.name}: nft table {table}: {result.stderr.strip()}")
        self.tables.clear()
        for host, ifname in reversed(self.links):
            problems += _delete_link(host, ifname)
        self.links.clear()
        for path in reversed(self.files):
            path.unlink(missing_ok=True)
        self.files.clear()
        return problems


def link_exists(host: LabHost, ifname: str) -> bool:
    with host.netlink() as ns:
        return bool(ns.link_lookup(ifname=ifname))


def link_is_up(host: LabHost, ifname: str) -> bool:
    with host.netlink() as ns:
        links = ns.get_links(ifname=ifname) if ns.link_lookup(ifname=ifname) else []
        return bool(links) and bool(links[0]["flags"] & IFF_UP)


def link_names(host: LabHost) -> list[str]:
    with host.netlink() as ns:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ns.get_links()]


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass  # the registry's terminate already sent SIGKILL; it cannot outlive it


def _delete_route(route: _Route) -> list[str]:
    try:
        with route.host.netlink() as ns:
            spec: dict[str, object] = {"dst": route.dst}
            if route.gateway is not None:
                spec["gateway"] = route.gateway
            if route.oif is not None:
                indices = ns.link_lookup(ifname=route.oif)
                if not indices:
                    return []  # the route went with its interface
                spec["oif"] = indices[0]
            ns.route("del", **spec)
    except Exception as error:  # noqa: BLE001 - a route already gone is fine
        if "No such process" in str(error) or "ESRCH" in str(error):
            return []
        return [f"{route.host.name}: route {route.dst}: {error}"]
    return []


def _delete_link(host: LabHost, ifname: str) -> list[str]:
    """A TUN goes when its program exits; delete it only if it stayed."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if not link_exists(host, ifname):
            return []
        time.sleep(POLL_S)
    try:
        with host.netlink() as ns:
            ns.link("del", ifname=ifname)
    except Exception as error:  # noqa: BLE001
        return [f"{host.name}: interface {ifname}: {error}"]
    return []


def run_checked(host: LabHost, argv: Sequence[str], what: str) -> str:
    try:
        return host.run(list(argv)).stdout
    except HostCommandError as error:
        raise TunnelError(f"{what}: {error}") from error
