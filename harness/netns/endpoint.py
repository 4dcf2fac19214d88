"""One address type for the whole harness: ``IP:PORT`` as a typed value, and
its one parser (every command line and spec that takes an endpoint uses it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Endpoint:
        """Parse ``IP:PORT`` (or ``IP`` when *default_port* is given); ValueError
        names what was expected."""
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            if default_port is None:
                raise ValueError(f"expected IP:PORT, got {text!r}")
            return cls(text.strip(), default_port)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected IP:PORT with a port 1-65535, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def as_tuple(self) -> tuple[str, int]:
        """(host, port), as the socket module takes it."""
        return self.host, self.port
