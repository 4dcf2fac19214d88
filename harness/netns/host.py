"""A lab host: a network namespace held open by a Mininet host shell.

Programs run inside it through `nsenter --net=/proc/<pid>/ns/net`, always as
argument lists (never shell strings), and every long-lived program is
recorded in the run's registry before anyone else can lose track of it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pyroute2 import NetNS

from harness.netns.process import listening_ports
from harness.netns.registry import Registry

NSENTER = "nsenter"


class HostCommandError(RuntimeError):
    pass


@dataclass
class LabHost:
    name: str
    role: str
    pid: int
    registry: Registry | None = None

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def argv(self, command: Sequence[str]) -> list[str]:
        """The argv that runs `command` inside this host's network namespace."""
        return [NSENTER, f"--net={self.netns_path}", "--", *command]

    def run(self, command: Sequence[str], *, input_text: str | None = None,
            timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(command), input=input_text, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise HostCommandError(
                f"{self.name}: {' '.join(command)} exited {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def start(self, command: Sequence[str], *, what: str, log: Path,
              env: Mapping[str, str] | None = None,
              stdout: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-lived program in this host and record it as the run's."""
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(
                self.argv(command), stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log_file, stderr=log_file,
                env=dict(env) if env is not None else None, start_new_session=True,
            )
        if self.registry is not None:
            try:
                self.registry.record_process(proc.pid, self.name, what)
            except RuntimeError:
                pass  # it already exited: nothing left to own; its log says why
        return proc

    def netlink(self) -> NetNS:
        """A pyroute2 netlink socket inside this host's namespace."""
        return NetNS(self.netns_path)

    def listening_ports(self, pid: int, proto: str) -> Container[int]:
        """The ports with a listening TCP (`proto` "tcp") or bound UDP ("udp")
        socket in the namespace of `pid`, a process this host started: what
        harness.netns.process.wait_listening probes for readiness."""
        return listening_ports(pid, proto)
