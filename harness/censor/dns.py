"""Taking names out of the national DNS: the censor's part of a policy's
``dns: {remove: [...]}`` (harness.spec.policy.DnsRemoval), as reported when
WhatsApp's domain disappeared from Russia's national DNS (docs/sources.md
S116: users saw NXDOMAIN).

The subscribers' resolver (harness.services.resolver: dnsmasq in the host
with role ``resolver``) serves a zone file and reads it again on SIGHUP.
Applying a plan writes the served zone as the lab's full zone without the
removed names, sends the resolver SIGHUP and waits until it has read the zone
again; a plan without a removal puts the full zone back. Nothing is touched
when the removal in force is already the plan's (``judged_call`` applies its
policy before every call).

What the removal did is counted like a rule's packets: the resolver's
NXDOMAIN answers for the removed names since the removal began, read from its
query log (``--log-queries`` writes ``config <name> is NXDOMAIN`` for each).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.netns.directory import RESOLVER, ResolverFiles, read_hosts_file, write_hosts_file
from harness.netns.host import LabHost
from harness.spec.policy import DnsRemoval

RELOAD_TIMEOUT_S = 5.0
POLL_S = 0.02
NXDOMAIN_LINE = re.compile(r" config (\S+) is NXDOMAIN$")
RELOAD_LINE = re.compile(r" read (\S+) - \d+ names?$")


class DnsApplyError(RuntimeError):
    pass


@dataclass(frozen=True)
class RemovalState:
    """The removal in force: its id, the names, and the size of the query log
    when it began (its counter counts from there)."""

    rule: str | None = None
    names: tuple[str, ...] = ()
    log_offset: int = 0

    @classmethod
    def read(cls, path: Path) -> RemovalState:
        try:
            raw = json.loads(path.read_text())
            return cls(raw.get("rule"), tuple(raw.get("names", ())), int(raw.get("log_offset", 0)))
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)) + "\n")
        tmp.replace(path)


def resolver_files(host: LabHost) -> ResolverFiles | None:
    """The lab's resolver files, found through the host's registry."""
    services = host.registry.state.services if host.registry is not None else None
    return services.resolver_files if services is not None else None


def apply_dns(host: LabHost, removal: DnsRemoval | None) -> None:
    """Make the resolver serve the lab's zone without `removal`'s names.
    `host` is any host of the lab (the censor): its registry finds the
    resolver. DnsApplyError when a removal is asked of a lab without a
    resolver, or the resolver does not reload."""
    files = resolver_files(host)
    if files is None:
        if removal is not None:
            raise DnsApplyError(f"the policy removes {', '.join(removal.remove)} from the "
                                "national DNS, but the topology has no resolver (a host "
                                "with role resolver)")
        return
    wanted = RemovalState(removal.id, tuple(removal.remove)) if removal else RemovalState()
    current = RemovalState.read(files.removal)
    if (current.rule, current.names) == (wanted.rule, wanted.names):
        return
    removed = set(wanted.names)
    served = {name: address for name, address in read_hosts_file(files.full_zone).items()
              if name not in removed}
    offset = _size(files.query_log)
    write_hosts_file(files.served_zone, served)
    _reload(host, files, offset)
    RemovalState(wanted.rule, wanted.names, offset).write(files.removal)


def _reload(host: LabHost, files: ResolverFiles, offset: int) -> None:
    assert host.registry is not None
    running = host.registry.running(RESOLVER)
    if not running:
        raise DnsApplyError(f"the {RESOLVER} is not running, so no name can be removed")
    for owned in running:
        os.kill(owned.pid, signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(found.group(1) == str(files.served_zone)
               for found in _matches(files.query_log, offset, RELOAD_LINE)):
            return
        time.sleep(POLL_S)
    raise DnsApplyError(f"the {RESOLVER} did not read {files.served_zone} again within "
                        f"{RELOAD_TIMEOUT_S:g} s of SIGHUP")


def nxdomain_count(files: ResolverFiles, state: RemovalState) -> int:
    """NXDOMAIN answers for the removed names since the removal began."""
    names = set(state.names)
    return sum(1 for found in _matches(files.query_log, state.log_offset, NXDOMAIN_LINE)
               if found.group(1).rstrip(".").lower() in names)


def removal_count(host: LabHost) -> tuple[str, int] | None:
    """(the removal's id, its NXDOMAIN answers so far), or None without a removal."""
    files = resolver_files(host)
    if files is None:
        return None
    state = RemovalState.read(files.removal)
    if state.rule is None:
        return None
    return state.rule, nxdomain_count(files, state)


def _matches(log: Path, offset: int, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [found for line in text.splitlines() if (found := pattern.search(line))]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
