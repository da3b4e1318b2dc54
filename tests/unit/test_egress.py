"""Callbacks go to public addresses only: the checks that keep a callback URL from reaching
the metadata service, localhost or keybind's private network."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from app.webhooks.egress import EgressRefused, literal_refusal, not_public, pin

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata services
    "100.64.0.1",  # carrier-grade NAT, shared address space
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1",
    "fd00::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not_public(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    assert literal_refusal(host) is not None
    with pytest.raises(EgressRefused):
        pin(f"https://{host}/hook")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass_and_are_pinned(address: str) -> None:
    assert not not_public(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    assert literal_refusal(host) is None
    pinned = pin(f"https://{host}:8443/hook?x=1")
    assert pinned.url.host == address and pinned.url.port == 8443
    assert pinned.url.path == "/hook" and pinned.url.query == b"x=1"
    assert pinned.headers == {"host": f"{host}:8443"}
    assert pinned.extensions == {"sni_hostname": address}


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "api.localhost"])
def test_localhost_names_refuse_without_a_lookup(host: str) -> None:
    assert literal_refusal(host) is not None


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    """This machine's own name resolves to its own addresses: refused when any is not
    public, otherwise pinned to the first while the Host header keeps the name."""
    name = socket.gethostname()
    addresses = [ipaddress.ip_address(i[4][0]) for i in socket.getaddrinfo(name, 80)]
    if any(not_public(a) for a in addresses):
        with pytest.raises(EgressRefused, match="not a public address"):
            pin(f"http://{name}/hook")
    else:
        pinned = pin(f"http://{name}/hook")
        assert pinned.url.host == str(addresses[0]) and pinned.headers == {"host": name}


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(EgressRefused, match="does not resolve"):
        pin("https://no-such-host.invalid/hook")
