"""The one facade both link backends present: apply, update and clear the
impairment of one link direction, i.e. the egress of one interface of one
lab host. Callers (the lab hook, `callwall link set`) never know which
backend is underneath."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from harness.netns.host import LabHost
from harness.spec.impairment import Impairment

BackendName = Literal["netem", "userspace"]
BackendChoice = Literal["auto", "netem", "userspace"]
BACKEND_CHOICES: tuple[str, ...] = ("auto", "netem", "userspace")
QUEUE_BASE = 1000  # the censor's userspace stages use 100-199


class LinkBackendError(RuntimeError):
    pass


@dataclass(frozen=True)
class LinkTarget:
    """One direction of one link: packets leaving `host` through `interface`.
    `queue` is the NFQUEUE number reserved for it (used by the userspace backend):
    1000 + link index x 2 + direction (0: a->b, 1: b->a), never a censor stage's."""

    host: LabHost
    interface: str
    link_index: int
    direction: int  # 0: a->b, 1: b->a

    @property
    def queue(self) -> int:
        return queue_number(self.link_index, self.direction)

    @property
    def label(self) -> str:
        return f"{self.host.name}:{self.interface}"


def queue_number(link_index: int, direction: int) -> int:
    if direction not in (0, 1) or link_index < 0:
        raise ValueError(f"bad link direction {link_index}/{direction}")
    return QUEUE_BASE + link_index * 2 + direction


class LinkBackend(ABC):
    """Applies impairments to link directions. Implementations own exactly what
    they install (one root qdisc, or one iptables rule plus one daemon) and
    remove exactly that on `clear`."""

    name: BackendName

    @abstractmethod
    def apply(self, target: LinkTarget, impairment: Impairment) -> None:
        """Start impairing `target` (it carries none of ours yet)."""

    @abstractmethod
    def update(self, target: LinkTarget, impairment: Impairment) -> None:
        """Change the impairment of a target `apply` set up, without a gap."""

    @abstractmethod
    def clear(self, target: LinkTarget) -> None:
        """Remove what `apply` installed on `target`; a no-op when nothing is."""

    @abstractmethod
    def is_applied(self, target: LinkTarget) -> bool:
        """Whether this backend currently impairs `target`."""

    def set(self, target: LinkTarget, impairment: Impairment) -> None:
        """apply or update, whichever fits: what `callwall link set` needs."""
        if self.is_applied(target):
            self.update(target, impairment)
        else:
            self.apply(target, impairment)
