"""Where a lab's services are and how to use them: what call clients need.
Recorded in the run's state (harness.netns.registry), so a process that
attaches to a running lab finds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# How the registry names the subscribers' resolver process (dnsmasq).
RESOLVER = "national resolver"


@dataclass(frozen=True)
class ServiceDirectory:
    relay_ip: str
    turn_port: int
    turns_port: int
    turn_username: str
    turn_password: str
    ca_file: str
    stun_ip: str
    stun_port: int
    signalling_ip: str
    signalling_port: int
    # The subscribers' resolver (harness.services.resolver), when the topology
    # has a host with role `resolver`: its address and its files' directory.
    resolver_ip: str | None = None
    resolver_dir: str | None = None

    @property
    def resolver_files(self) -> ResolverFiles | None:
        return ResolverFiles(Path(self.resolver_dir)) if self.resolver_dir else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ServiceDirectory:
        return cls(**raw)


@dataclass(frozen=True)
class ResolverFiles:
    """The resolver's files, shared by the service that runs it
    (harness.services.resolver) and the censor that takes names out of it
    (harness.censor.dns): the lab's whole zone, the zone it serves now (a
    hosts file it reads again on SIGHUP), its query log, and the removal in
    force (JSON: rule id, names, where in the log it began)."""

    directory: Path

    @property
    def full_zone(self) -> Path:
        return self.directory / "zone.full"

    @property
    def served_zone(self) -> Path:
        return self.directory / "zone.hosts"

    @property
    def query_log(self) -> Path:
        return self.directory / "queries.log"

    @property
    def removal(self) -> Path:
        return self.directory / "removal.json"


def write_hosts_file(path: Path, zone: Mapping[str, str]) -> None:
    """A zone as a hosts file (``address name`` a line, sorted by name),
    atomically: the resolver may read it at any moment."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{zone[name]} {name}\n" for name in sorted(zone)))
    tmp.replace(path)


def read_hosts_file(path: Path) -> dict[str, str]:
    """name -> address, from a file write_hosts_file wrote."""
    zone = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2:
            zone[fields[1]] = fields[0]
    return zone
