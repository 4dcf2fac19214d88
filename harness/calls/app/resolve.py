"""How an app-like client finds its servers: by name (``wa-chat.lab``), either
through a resolver (the caller's: the ISP's, harness.services.resolver) or
from names given on its command line (the callee abroad, a tunnelled caller).
A name that does not resolve raises ResolveError, naming the name and what
the resolver said; the call then fails with ``dns-failed`` at stage ``dns``
(harness.calls.app.client)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import dns.asyncresolver
import dns.exception
import dns.resolver


class ResolveError(Exception):
    """A name did not resolve; the message says which and why (the caller
    turns it into the call's ``dns-failed``)."""

DNS_PORT = 53
DNS_TIMEOUT_S = 3.0  # [S] per name; an app's own retry schedule is not reported


def is_address(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


async def resolve(name: str, resolver: str | None, static: Mapping[str, str],
                  timeout_s: float = DNS_TIMEOUT_S) -> str:
    """The IPv4 address of `name`: itself if it is one, from `static`, else
    asked of `resolver` (an A query over UDP to its port 53)."""
    if is_address(name):
        return name
    if name in static:
        return static[name]
    if resolver is None:
        raise ResolveError(f"{name}: no resolver and no address given")
    client = dns.asyncresolver.Resolver(configure=False)
    client.nameservers = [resolver]
    client.port = DNS_PORT
    try:
        answer = await client.resolve(name, "A", lifetime=timeout_s, search=False)
    except dns.resolver.NXDOMAIN:
        raise ResolveError(f"{name}: NXDOMAIN from the resolver {resolver}") from None
    except dns.resolver.NoAnswer:
        raise ResolveError(f"{name}: no A record from the resolver {resolver}") from None
    except dns.exception.Timeout:
        raise ResolveError(f"{name}: the resolver {resolver} did not answer in "
                           f"{timeout_s:g} s") from None
    except dns.exception.DNSException as exc:
        raise ResolveError(f"{name}: {type(exc).__name__} from the resolver {resolver}: "
                           f"{exc}"[:200]) from None
    return str(answer[0])
