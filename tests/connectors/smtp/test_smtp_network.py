"""Issue 18, item 3: a tenant's SMTP host/port was an oracle for the hub's network (port 1
"connection refused", 6379 "timed out"). In production the SMTP connector does not connect to
non-public addresses at all; and a closed port, a blackholed port and an open port that is not
an SMTP server give one and the same answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from smtp_support import create_connector

from connectors.base import OutboundMessage, PermanentProviderError, ProviderError, TransientProviderError
from connectors.sandbox.server import free_port

MESSAGE = OutboundMessage(channel="email", to="maria@cliente.example.com", body="Olá", subject="Consulta")


def send_error(connector) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        connector.send(MESSAGE)
    return raised.value


@pytest.fixture
def blackholed_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener whose one-slot backlog is already full
    (Linux drops further SYNs), so a connect times out as to a firewalled host."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # fills the backlog
            yield port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections but never greets (Redis on 6379, say)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield listener.getsockname()[1]


class TestProduction:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::ffff:127.0.0.1", "::1"])
    def test_the_relay_on_loopback_is_refused_and_receives_nothing(self, relay, host):
        error = send_error(create_connector(relay.port, host=host, allow_private=False))
        assert isinstance(error, PermanentProviderError) and error.code == "address_not_allowed"
        assert relay.handler.envelopes == []

    def test_the_check_is_refused_too(self, relay):
        health = create_connector(relay.port, allow_private=False).check()
        assert not health.ok and health.detail.startswith("address_not_allowed")

    def test_targets_name_the_field(self):
        connector = create_connector(2525, host="smtp.example.com")
        assert connector.network_targets() == [("host", "smtp.example.com", 2525)]


class TestNoOracle:
    def test_closed_blackholed_and_silent_ports_answer_alike(self, blackholed_port, silent_port):
        closed_port = free_port()
        answers = {}
        for what, port in (("closed", closed_port), ("blackholed", blackholed_port), ("silent", silent_port)):
            error = send_error(create_connector(port, timeout=0.5))
            health = create_connector(port, timeout=0.5).check()
            assert isinstance(error, TransientProviderError), what
            answers[what] = (error.code, error.message.replace(str(port), "PORT"), health.ok,
                             health.detail.replace(str(port), "PORT"))
        assert answers["closed"] == answers["blackholed"] == answers["silent"] == (
            "connection_error", "could not connect to the SMTP server 127.0.0.1:PORT", False,
            "connection_error: could not connect to the SMTP server 127.0.0.1:PORT")


class TestDevelopment:
    def test_reaches_the_local_relay(self, relay):
        result = create_connector(relay.port, host="localhost").send(MESSAGE)
        assert result.status == "sent" and len(relay.handler.envelopes) == 1
