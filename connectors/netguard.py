"""The one gate every connection to a tenant-supplied address goes through.

A tenant names an SMTP host (and, later, webhook URLs and media to fetch); the hub
connecting there for them must not become a probe of the hub's own network. In
production the guard refuses every address that is not public — loopback, private
(RFC 1918, ULA), link-local, multicast, unspecified, reserved, shared (CGNAT
100.64/10) and the cloud metadata endpoints — judged on the *resolved* address, and the
socket is connected to that very address, so a name that resolves to a public address
when checked and to 127.0.0.1 a moment later (DNS rebinding) cannot slip through.

The errors say as little as they can: :class:`TargetRefused` only that the host is not
allowed (never the address or why), :class:`TargetUnreachable` one sentence for
"refused", "timed out", "no route" and "no such name" alike, so the answers cannot tell
an open internal port from a closed one.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not all of these are covered by ipaddress's is_private/is_global in every Python.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, CGNAT
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address inside


class TargetRefused(Exception):
    """The address is one the hub does not connect to for a tenant."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        super().__init__(f"{host} is not a public address; the hub connects only to public hosts")


class TargetUnreachable(OSError):
    """Could not connect; deliberately without saying whether refused, timed out or unknown."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        super().__init__(f"could not connect to {host}:{port}")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    """True for an address anyone on the Internet could reach; False for the hub's neighbours."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    if address in METADATA_ADDRESSES or (isinstance(address, ipaddress.IPv4Address)
                                         and address in SHARED_ADDRESS_SPACE):
        return False
    if address.is_loopback or address.is_private or address.is_link_local or address.is_multicast:
        return False
    if address.is_unspecified or address.is_reserved:
        return False
    return address.is_global


@dataclass(frozen=True)
class NetworkGuard:
    """Where the hub may connect for a tenant. ``allow_private``: development, any address."""

    allow_private: bool = False

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """``(family, sockaddr)`` of every address ``host`` resolves to, each one allowed.

        TargetRefused when any is not (a name that also resolves inward is not trusted);
        TargetUnreachable when the name does not resolve."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError, ValueError):
            raise TargetUnreachable(host, port) from None
        resolved = [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]
        if not self.allow_private:
            for _family, sockaddr in resolved:
                # an IPv6 sockaddr may carry a zone ("fe80::1%eth0"); the address is before it
                address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
                if not is_public(address):
                    raise TargetRefused(host, port)
        return resolved

    def check(self, host: str, port: int) -> None:
        """Refuse ``host`` now (install time) when it resolves to an address not allowed."""
        self.resolve(host, port)

    def connect(self, host: str, port: int, timeout: float | None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        """A TCP socket connected to an allowed address of ``host`` — the one checked."""
        for family, sockaddr in self.resolve(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError:
                sock.close()
        raise TargetUnreachable(host, port)
