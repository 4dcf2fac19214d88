"""Containers in a lab: topology hosts that run an image, and call endpoints
whose program comes from an image.

A **host container** (a topology host with ``image:``) is created with
``--network none`` through the Docker SDK: its network namespace holds only
a loopback, and each of the host's links is a veth pair whose end is moved
into that namespace with pyroute2 and renamed ethN there (as Containernet
does), where harness.netns.netconfig then sets its addresses and routes like
any host's. The container's init process is the host's PID: the harness's
own programs run in its namespace through nsenter, as in a Mininet host,
while the image's program (its command) is the host's own.

An **endpoint container** gives a call endpoint the files of its image: it
idles with ``--network none`` in this machine's PID namespace (so that its
/proc describes the programs entered into it), and the endpoint's program is
started through
`endpoint_argv`: nsenter into the container's mount, UTS and IPC namespaces
and root, from inside the lab host's network namespace, so the program sees
the image's files and the lab host's network. The program is the harness's
own child, recorded in the registry like every call process.

Every container is recorded in the run's registry by name before the engine
is asked for it, then with its id and init PID (harness.containers.runtime),
with stop signals held back in between, so a Ctrl-C cannot fall between
creating and recording. The registry removes them by those records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import NetNS

from harness.containers.runtime import ContainerError, ContainerRecord, Docker
from harness.netns.registry import HOST_CONTAINER, Registry
from harness.netns.stop_signals import stop_signals_deferred
from harness.spec.topology import HostSpec

NSENTER = "nsenter"
LINK_TIMEOUT_S = 5.0


class ContainerHostError(RuntimeError):
    """A container of the lab could not be created, started or wired."""


def ns_path(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def endpoint_argv(container_pid: int, argv: Sequence[str]) -> list[str]:
    """`argv` run with the files (mount namespace, root and working
    directory), host name and IPC of the container whose init is
    `container_pid`, and the network namespace of whoever runs this (the lab
    host: LabHost.start prefixes its own nsenter --net)."""
    return [NSENTER, f"--target={container_pid}", "--mount", "--uts", "--ipc", "--root",
            "--wd", "--", *argv]


@dataclass
class LabContainers:
    """The containers of one lab run, on one engine opened on first use."""

    registry: Registry
    docker: Docker | None = None
    records: dict[str, ContainerRecord] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.registry.state.run_id

    def engine(self) -> Docker:
        if self.docker is None:
            try:
                self.docker = Docker.open()
            except Exception as exc:  # EngineError, ContainerError: one message
                raise ContainerHostError(f"no Docker engine for the lab's containers: {exc}") \
                    from exc
        return self.docker

    def run(self, name: str, host: str, what: str, image: str, *,
            command: Sequence[str] | None = None,
            mounts: Mapping[str, str] | None = None,
            read_only_mounts: Mapping[str, str] | None = None,
            host_pids: bool = False) -> ContainerRecord:
        """Create and start one container, recorded at every step; returns its
        record (with the init PID)."""
        docker = self.engine()
        record = docker.record(self.run_id, name, host, what)
        try:
            with stop_signals_deferred():
                self._record(record)
                record = docker.create(record, image, command=command, mounts=mounts,
                                       read_only_mounts=read_only_mounts, host_pids=host_pids)
                self._record(record)
            record = docker.start(record)
        except ContainerError as exc:
            raise ContainerHostError(str(exc)) from exc
        self._record(record)
        return record

    def _record(self, record: ContainerRecord) -> None:
        self.records[record.name] = record
        self.registry.record_container(record)

    def image_env(self, image: str) -> dict[str, str]:
        """The environment the image declares (ENV), for programs run in its files."""
        config = self.engine().image_config(image)
        env: dict[str, str] = {}
        for entry in config.get("Env") or []:
            key, _, value = str(entry).partition("=")
            if key:
                env[key] = value
        return env

    def remove(self, names: Sequence[str]) -> list[str]:
        """Remove these containers of the run now (an endpoint's, after its
        call); returns what could not be removed."""
        problems: list[str] = []
        docker = self.engine()
        for name in names:
            record = self.records.pop(name, None)
            if record is None:
                continue
            problem = docker.remove(record)
            if problem:
                problems.append(problem)
                continue
            self.registry.forget_container(name)
        return problems

    def close(self) -> None:
        """Let go of the engine (a private dockerd nobody else uses stops)."""
        if self.docker is not None:
            docker, self.docker = self.docker, None
            docker.close()


@contextlib.contextmanager
def lab_containers(registry: Registry) -> Iterator[LabContainers]:
    """LabContainers for the block; the engine is let go at its end (the
    containers stay recorded in the registry, which removes them)."""
    containers = LabContainers(registry)
    try:
        yield containers
    finally:
        containers.close()


# ------------------------------------------------------------------ host containers

def host_container_name(run_id: str, host: str) -> str:
    return f"{run_id}-{host}"


def start_host_container(containers: LabContainers, host: str, spec: HostSpec) -> int:
    """The container that holds topology host `host`; returns its init PID."""
    assert spec.image is not None
    record = containers.run(host_container_name(containers.run_id, host), host,
                            HOST_CONTAINER, spec.image, command=spec.command)
    return record.pid


def add_veth(pid_a: int, name_a: str, pid_b: int, name_b: str, temp_name: str) -> None:
    """A veth pair between the network namespaces of `pid_a` and `pid_b`:
    created in a's namespace as `name_a` and `temp_name`, then the
    `temp_name` end is moved into b's namespace and renamed `name_b` there."""
    with NetNS(ns_path(pid_a)) as ns:
        ns.link("add", ifname=name_a, kind="veth", peer=temp_name)
        index = _wait_link(ns, temp_name)
        ns.link("set", index=index, net_ns_pid=pid_b)
    with NetNS(ns_path(pid_b)) as ns:
        index = _wait_link(ns, temp_name)
        ns.link("set", index=index, ifname=name_b)


def _wait_link(ns: NetNS, ifname: str) -> int:
    deadline = time.monotonic() + LINK_TIMEOUT_S
    while True:
        found = ns.link_lookup(ifname=ifname)
        if found:
            return int(found[0])
        if time.monotonic() >= deadline:
            raise ContainerHostError(f"interface {ifname} did not appear")
        time.sleep(0.02)


def interface_names(links: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each link's two interface names, eth0, eth1, ... per host in link order
    (as harness.spec.topology.Topology.interfaces names them)."""
    count: dict[str, int] = {}
    names: list[tuple[str, str]] = []
    for a, b in links:
        names.append((f"eth{count.get(a, 0)}", f"eth{count.get(b, 0)}"))
        count[a] = count.get(a, 0) + 1
        count[b] = count.get(b, 0) + 1
    return names


def mount_paths(paths: Sequence[Path]) -> dict[str, str]:
    """Host paths bound at the same path inside a container."""
    return {str(path): str(path) for path in paths}
