"""Where outbound callbacks may go: public addresses only, unless the operator allows more.

A callback URL is the caller's choice. Unguarded, any token holder could make keybind's
workers POST to the cloud's metadata service (169.254.169.254), to an admin port on
localhost, or to anything else on keybind's private network, and read the outcome back from
the job's callback attempts. So the host is resolved once, every address it resolves to is
checked, and the request is pinned to a checked address (TLS still verifies the certificate
against the host name): DNS that changes its answer between the check and the connection
cannot slip past.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(Exception):
    """The callback URL leads to an address callbacks may not reach."""


def not_public(ip: Address) -> bool:
    """Loopback, private, link-local (metadata services), shared, reserved or multicast."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def literal_refusal(host: str) -> str | None:
    """Why a URL host refuses without a DNS lookup (an address or localhost), or None."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is this machine; callbacks go to public addresses only"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return None
    if not_public(ip):
        return f"{host} is not a public address; callbacks go to public addresses only"
    return None


@dataclass(frozen=True, slots=True)
class Pinned:
    """A request to a checked address, still naming the original host."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def pin(url: str) -> Pinned:
    """Resolve the URL's host and pin the request to its first address; EgressRefused when
    any address it resolves to is not public (a mixed answer is how rebinding starts)."""
    parsed = httpx.URL(url)
    host = parsed.host
    reason = literal_refusal(host)
    if reason is not None:
        raise EgressRefused(reason)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise EgressRefused(f"{host} does not resolve ({exc.strerror})") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for ip in addresses:
        if not_public(ip):
            raise EgressRefused(
                f"{host} resolves to {ip}, not a public address; callbacks go to public"
                " addresses only"
            )
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return Pinned(
        url=parsed.copy_with(host=str(addresses[0])),
        headers={"host": parsed.netloc.decode("ascii")},
        extensions=extensions,
    )
