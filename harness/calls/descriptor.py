"""Call clients described by endpoint descriptors (harness.spec.descriptor):
a user's own program, on this machine or in a container image, placed like
any other profile.

Each side runs harness.calls.descriptor_peer in its lab host, which runs the
descriptor's argv (placeholders filled in, element by element, never through
a shell) and turns the program's ``{out_dir}/result.json`` into the side's
report. With ``image:``, the program runs with the image's files: a container
of the image idles with no network of its own, and the program enters its
mount namespace from the lab host's network namespace
(harness.netns.container_hosts.endpoint_argv). The containers are recorded in
the run's registry before they exist and removed after the call, whatever
happened (the registry removes them too, should this process die).
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from harness.calls.base import CallError, CallOutput, CallSettings
from harness.calls.descriptor_peer import program_what
from harness.calls.procs import process_name, reference_audio, run_peers
from harness.containers.engine import EngineError
from harness.containers.images import ensure_image, missing_for_image
from harness.containers.runtime import ContainerError, Docker
from harness.faults import Fault
from harness.netns.container_hosts import (
    ContainerHostError,
    LabContainers,
    endpoint_argv,
    lab_containers,
    mount_paths,
)
from harness.netns.endpoint import Endpoint
from harness.spec.descriptor import (
    ClientSpec,
    Descriptor,
    DescriptorError,
    carried_strategy,
    descriptors,
    substitute,
)
from harness.spec.names import ROLES
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

SIDES: tuple[str, ...] = tuple(role.value for role in ROLES)
OTHER = {"caller": "callee", "callee": "caller"}


def descriptor_client(profile: str) -> DescriptorClient:
    """The client of a client descriptor's profile; CallError if there is none."""
    found = descriptors().clients.get(profile)
    if found is None:
        raise CallError(f"no client descriptor {profile!r}")
    return DescriptorClient(found)


def missing_descriptor_tools(profile: str) -> list[str]:
    """What a descriptor profile needs that this machine lacks: its tools, and
    for an image, a Docker engine (one at $DOCKER_HOST, or dockerd to start
    callwall's own) and what building the image needs where the engine lacks
    it (harness.containers.images.missing_for_image); empty for a profile
    that is no descriptor."""
    found = descriptors().clients.get(profile)
    if found is None or found.client is None:
        return []
    missing = [f"{tool.program} (Debian package {tool.package})" for tool in found.tools
               if shutil.which(tool.program) is None]
    return missing + missing_for_image(found)


@functools.cache
def prepare_descriptor(profile: str) -> str | None:
    """Make a descriptor profile's image ready before its calls (built here
    once, then cached), so that no call's wall time holds a build. None when
    it is ready (or the profile runs no image); else why this machine has no
    usable Docker engine (dockerd is there but does not start): a reason to
    skip, like a missing tool. An image that could be built and fails to is
    a CallError: a broken descriptor is an error, never a skip."""
    found = descriptors().clients.get(profile)
    if found is None or found.client is None or found.client.image is None:
        return None
    try:
        docker = Docker.open()
    except (EngineError, ContainerError) as exc:
        return f"no usable Docker engine ({exc})"
    try:
        build = ensure_image(docker, found)
    except ContainerError as exc:
        raise CallError(f"descriptor {profile}: {exc}") from exc
    finally:
        docker.close()
    if build.built:
        print(f"built image {build.image} in {build.seconds} s", file=sys.stderr, flush=True)
    return None


def out_dir(call_dir: Path, role: str) -> Path:
    """Where one side's program writes result.json and its audio."""
    return call_dir / f"{role}-out"


def placeholder_values(lab: Lab, client: ClientSpec, found: Descriptor, strategy: str,
                       settings: CallSettings, call_dir: Path, audio: Path,
                       endpoints: TunnelledEndpoints | None) -> dict[str, dict[str, str]]:
    """Each role's placeholder values (harness.spec.descriptor.CLIENT_PLACEHOLDERS)."""
    services = lab.services
    if services is None:
        raise CallError("the lab's services are not running")
    room = f"{lab.run_id}-{call_dir.name}"
    addresses = {role: str(lab.topology.address_of(lab.host_with_role(role).name))
                 for role in SIDES}
    values: dict[str, dict[str, str]] = {}
    for role in SIDES:
        tunnelled = endpoints if role == "caller" and endpoints is not None else None
        turn = (tunnelled.turn if tunnelled is not None and tunnelled.turn is not None
                else Endpoint(services.relay_ip, services.turn_port))
        own_ip = (tunnelled.host_ip if tunnelled is not None and tunnelled.host_ip
                  else addresses[role])
        values[role] = {
            "role": role, "strategy": strategy,
            "own_ip": own_ip, "own_port": str(client.port),
            "peer_ip": addresses[OTHER[role]], "peer_port": str(client.port),
            "stun_url": f"stun:{services.stun_ip}:{services.stun_port}",
            "turn_url": f"turn:{turn.host}:{turn.port}",
            "turn_host": turn.host, "turn_port": str(turn.port),
            "turn_user": services.turn_username, "turn_password": services.turn_password,
            "ca_file": services.ca_file,
            "signalling": f"{services.signalling_ip}:{services.signalling_port}",
            "signalling_ip": services.signalling_ip,
            "signalling_port": str(services.signalling_port),
            "room": room, "reference_wav": str(audio),
            "out_dir": str(out_dir(call_dir, role)),
            "media_s": f"{settings.media_s:g}", "setup_timeout_s": f"{settings.setup_timeout_s:g}",
            "descriptor_dir": str(found.directory),
        }
    return values


class DescriptorClient:
    """A CallClient for one client descriptor; its profile is the descriptor's name."""

    def __init__(self, found: Descriptor) -> None:
        if found.client is None:
            raise ValueError(f"descriptor {found.name} is a tunnel, not a client")
        self.descriptor = found
        self.client: ClientSpec = found.client
        self.profile = found.name

    def tunnel_inner(self, tunnel: str) -> str:
        carried = carried_strategy(tunnel)
        if carried is None:
            raise CallError(f"profile {self.profile} goes through descriptor tunnels only, "
                            f"not {tunnel!r}")
        return carried

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        call_dir.mkdir(parents=True, exist_ok=True)
        audio = reference_audio(lab)
        values = placeholder_values(lab, self.client, self.descriptor, strategy, settings,
                                    call_dir, audio, endpoints)
        try:
            programs = {role: substitute(self.client.argv(role), values[role])
                        for role in SIDES}
        except DescriptorError as exc:
            raise CallError(f"descriptor {self.profile}: {exc}") from exc
        for role in SIDES:
            out_dir(call_dir, role).mkdir(parents=True, exist_ok=True)
        if self.client.image is None:
            return self._run(lab, programs, None, strategy, settings, call_dir, fault)
        with lab_containers(lab.registry) as containers:
            return self._in_containers(containers, lab, programs, strategy, settings,
                                       call_dir, audio, fault)

    def _in_containers(self, containers: LabContainers, lab: Lab,
                       programs: dict[str, list[str]], strategy: str, settings: CallSettings,
                       call_dir: Path, audio: Path, fault: Fault | None) -> CallOutput:
        assert self.client.image is not None
        try:
            build = ensure_image(containers.engine(), self.descriptor)
        except (ContainerError, ContainerHostError) as exc:
            raise CallError(f"descriptor {self.profile}: {exc}") from exc
        if build.built:
            print(f"[{lab.run_id}] built image {build.image} in {build.seconds} s",
                  file=sys.stderr, flush=True)
        names: list[str] = []
        try:
            pids: dict[str, int] = {}
            for role in SIDES:
                name = f"{lab.run_id}-{call_dir.name}-{role}"[:120]
                names.append(name)
                record = containers.run(
                    name, lab.host_with_role(role).name, f"{role} endpoint",
                    self.client.image, command=self.client.idle,
                    mounts=mount_paths([call_dir.resolve()]),
                    read_only_mounts=mount_paths([audio.resolve(), self.descriptor.directory]),
                    host_pids=True)
                pids[role] = record.pid
            wrapped = {role: endpoint_argv(pids[role], programs[role]) for role in SIDES}
            env = containers.image_env(self.client.image)
            return self._run(lab, wrapped, env, strategy, settings, call_dir, fault)
        except ContainerHostError as exc:
            raise CallError(f"descriptor {self.profile}: {exc}") from exc
        finally:
            for role in ROLES:  # nothing of the call may outlive its containers
                lab.registry.stop(process_name(role))
                lab.registry.stop(program_what(role))
            problems = containers.remove(names)
            if problems:
                print(f"[{lab.run_id}] left behind (the registry retries): "
                      + "; ".join(problems), file=sys.stderr, flush=True)

    def _run(self, lab: Lab, programs: dict[str, list[str]], env: Mapping[str, str] | None,
             strategy: str, settings: CallSettings, call_dir: Path,
             fault: Fault | None) -> CallOutput:
        def argv(role: str) -> list[str]:
            peer = [sys.executable, "-m", "harness.calls.descriptor_peer", "--role", role,
                    "--program-json", json.dumps(programs[role]),
                    "--out-dir", str(out_dir(call_dir, role)),
                    "--report", str(call_dir / f"{role}.json"),
                    "--run-dir", str(lab.registry.dir),
                    "--host", lab.host_with_role(role).name,
                    "--strategy", strategy, "--profile", self.profile]
            if settings.record_audio:
                peer += ["--received-wav", str(call_dir / f"{role}-received.wav")]
            if env is not None:
                peer += ["--program-env-json", json.dumps(dict(env))]
            return peer

        try:
            return run_peers(lab, argv, call_dir, settings, fault, strategy)
        finally:
            for role in ROLES:
                lab.registry.stop(program_what(role))
