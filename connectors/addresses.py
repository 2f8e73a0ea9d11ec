"""Which network addresses a connector may reach: public ones, unless the user says otherwise.

A URL the user typed is trusted as given (its host may be ``127.0.0.1`` or a LAN name).
Every other host a remote document leads to (a feed's enclosure, an index page's link, a
redirect) must resolve only to public addresses: the check runs on the addresses the
connection then uses (:func:`allowed_addresses`), so DNS rebinding or a redirect cannot
slip past it. :func:`address_problem` is the pure classifier.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from clasp_ingest.errors import ConnectorError

__all__ = [
    "ALLOW_PRIVATE_HINT",
    "BlockedAddressError",
    "Resolver",
    "address_problem",
    "allowed_addresses",
]

#: How to lift the check (named in every refusal).
ALLOW_PRIVATE_HINT = "pass --allow-private-hosts (CLASP_ALLOW_PRIVATE_HOSTS=1) if you trust it"

#: ``socket.getaddrinfo``-compatible: ``(host, port, family, type)`` to ``[(family, type, proto,
#: name, sockaddr)]``.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddressError(ConnectorError):
    """A host resolves to an address that is not public and was not allowed."""

    def __init__(self, host: str, address: str, problem: str) -> None:
        self.host = host
        self.address = address
        self.problem = problem
        where = host if host == address else f"{host} ({address})"
        article = "an" if problem[:1].lower() in "aeiou" else "a"  # "an unspecified", "an IPv4-in-IPv6"
        super().__init__(f"{where} is {article} {problem} address, refused; {ALLOW_PRIVATE_HINT}")


def _checks(ip: _IPAddress) -> list[tuple[bool, str]]:
    return [
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),  # fec0::/10
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "carrier-grade NAT (shared)"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "non-global"),
    ]


def address_problem(address: str | _IPAddress) -> str | None:
    """Why ``address`` is not a public internet address (``"loopback"``, ``"private"``...), or None.

    IPv4 addresses inside IPv6 (mapped ``::ffff:a.b.c.d``, 6to4, Teredo) are judged as the
    IPv4 address they carry; an IPv6 zone (``%eth0``) is ignored. Not an address: ValueError.
    """
    ip = ipaddress.ip_address(str(address).split("%", 1)[0]) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            problem = address_problem(inner)
            return f"IPv4-in-IPv6 {problem}" if problem else None
    for failed, problem in _checks(ip):
        if failed:
            return problem
    return None


def allowed_addresses(
    host: str,
    port: int,
    *,
    check: bool,
    resolver: Resolver = socket.getaddrinfo,
) -> list[tuple[int, tuple[Any, ...]]]:
    """``(family, sockaddr)`` of ``host`` to connect to; with ``check``, all must be public.

    Raises :class:`BlockedAddressError` when ``check`` and any address of ``host`` is not public
    (one bad answer refuses the host: a name pointing at both is not trusted either).
    """
    infos = resolver(host, port, 0, socket.SOCK_STREAM)
    found = [(int(family), tuple(sockaddr)) for family, _, _, _, sockaddr in infos]
    if check:
        for _, sockaddr in found:
            problem = address_problem(str(sockaddr[0]))
            if problem is not None:
                raise BlockedAddressError(host, str(sockaddr[0]), problem)
    return found
