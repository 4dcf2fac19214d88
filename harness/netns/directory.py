"""Where a lab's services are and how to use them: what call clients need.
Recorded in the run's state (harness.netns.registry), so a process that
attaches to a running lab finds them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ServiceDirectory:
        return cls(**raw)
