"""The network guard (issue 18, item 3): in production a tenant-chosen address must be public,
judged on what the name resolves to; development still reaches local servers."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from connectors.netguard import NetworkGuard, TargetRefused, TargetUnreachable, is_public
from hub.settings import Settings

NOT_PUBLIC = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "10.255.1.2", "172.16.0.1", "192.168.1.1",  # loopback, RFC 1918
    "169.254.169.254", "169.254.170.2", "169.254.1.1",  # metadata, link-local
    "100.64.0.1", "100.100.100.200",  # CGNAT (and Alibaba's metadata inside it)
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",  # unspecified, multicast, reserved
    "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1",  # IPv6 loopback … metadata, multicast
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::7f00:1", "2002:7f00:1::1",  # NAT64 and 6to4 carrying 127.0.0.1
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


def production_guard() -> NetworkGuard:
    return NetworkGuard(allow_private=Settings(env="production").allows_private_targets)


class TestSettings:
    def test_production_refuses_and_development_allows_by_default(self):
        assert Settings(env="production").allows_private_targets is False
        assert Settings(env="development").allows_private_targets is True

    def test_the_setting_overrides_either_way(self, monkeypatch):
        monkeypatch.setenv("HUB_ALLOW_PRIVATE_TARGETS", "false")
        assert Settings(env="development").allows_private_targets is False
        monkeypatch.setenv("HUB_ALLOW_PRIVATE_TARGETS", "true")
        assert Settings(env="production").allows_private_targets is True


class TestAddresses:
    @pytest.mark.parametrize("address", NOT_PUBLIC)
    def test_not_public(self, address):
        assert not is_public(ipaddress.ip_address(address))

    @pytest.mark.parametrize("address", PUBLIC)
    def test_public(self, address):
        assert is_public(ipaddress.ip_address(address))


class TestProductionGuard:
    @pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:127.0.0.1",
                                      "localhost"])
    def test_refused_before_any_connection(self, host):
        with pytest.raises(TargetRefused) as refused:
            production_guard().connect(host, 25, timeout=1)
        # says only that it is not allowed: not the address it resolved to, nor why
        assert str(refused.value) == f"{host} is not a public address; the hub connects only to public hosts"

    def test_a_name_that_does_not_resolve_reads_like_any_failure_to_connect(self):
        with pytest.raises(TargetUnreachable, match=r"^could not connect to no-such-host\.invalid:25$"):
            production_guard().check("no-such-host.invalid", 25)

    def test_the_socket_goes_to_the_address_that_was_checked(self, monkeypatch):
        """DNS rebinding: the name is resolved once, and the connection goes to that answer
        (a second lookup that would answer 127.0.0.1 is never made)."""
        answers = [[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 25))]]
        lookups = []

        def resolver(host, port, *args, **kwargs):
            lookups.append(host)
            return answers[0]

        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        with pytest.raises(TargetRefused):
            production_guard().connect("rebinding.example", 25, timeout=1)
        assert lookups == ["rebinding.example"]

    def test_a_name_with_one_inward_address_among_public_ones_is_refused(self, monkeypatch):
        mixed = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 25)),
                 (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 25))]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: mixed)
        with pytest.raises(TargetRefused):
            production_guard().check("mixed.example", 25)


class TestDevelopmentGuard:
    def test_reaches_a_local_listener(self):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            with NetworkGuard(allow_private=True).connect("localhost", port, timeout=5) as sock:
                assert sock.getpeername()[1] == port
