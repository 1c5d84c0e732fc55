"""Real aiosmtpd servers on 127.0.0.1, one per behaviour, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from smtp_support import BusyHandler, StoringHandler, UnknownUserHandler, authenticate

from connectors.sandbox.server import free_port


def _serve(handler, **smtp_options) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=5.0, **smtp_options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def storing_server() -> Iterator[Controller]:
    yield from _serve(StoringHandler())


@pytest.fixture
def relay(storing_server: Controller) -> Controller:
    storing_server.handler.envelopes.clear()
    return storing_server


@pytest.fixture(scope="session")
def auth_relay() -> Iterator[Controller]:
    # plain-text AUTH is fine on loopback; production relays would require TLS first
    yield from _serve(StoringHandler(), authenticator=authenticate, auth_require_tls=False, auth_required=True)


@pytest.fixture(scope="session")
def busy_relay() -> Iterator[Controller]:
    yield from _serve(BusyHandler())


@pytest.fixture(scope="session")
def rejecting_relay() -> Iterator[Controller]:
    yield from _serve(UnknownUserHandler())
