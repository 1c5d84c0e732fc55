"""The Twilio sandbox served on 127.0.0.1, a webhook receiver, and connector factories.

No ``__init__.py`` here on purpose: with one, pytest would put ``tests/connectors`` on
``sys.path`` and this directory would shadow the ``twilio`` SDK. (The project root is
on sys.path through ``pythonpath = ["."]``: without it ``tests/connectors`` would
import as a namespace package hiding the real ``connectors``.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from connectors.base import WebhookRequest
from connectors.sandbox.app import create_sandbox_app
from connectors.sandbox.server import ThreadedServer
from connectors.sandbox.twilio import TwilioSandbox
from connectors.twilio import TwilioConnector
from tests.support import random_hex


@dataclass
class Sandbox:
    url: str
    state: TwilioSandbox


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[Sandbox]:
    app = create_sandbox_app()
    with ThreadedServer(app) as server:
        yield Sandbox(server.url, app.state.twilio)


@pytest.fixture
def sandbox(_sandbox_server: Sandbox) -> Iterator[Sandbox]:
    """The running sandbox, emptied, with fast status callbacks."""
    state = _sandbox_server.state
    state.reset()
    state.callback_delay = 0.02
    yield _sandbox_server
    state.reset()


class WebhookReceiver:
    """A tiny app standing in for the hub: records every POST as a WebhookRequest."""

    def __init__(self) -> None:
        self.received: list[WebhookRequest] = []
        self._changed = threading.Condition()
        self.app = FastAPI()

        @self.app.post("/{path:path}")
        async def capture(request: Request) -> Response:
            hit = WebhookRequest(
                method=request.method,
                url=str(request.url),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.body(),
                query=dict(request.query_params),
            )
            with self._changed:
                self.received.append(hit)
                self._changed.notify_all()
            return Response("<Response/>", media_type="text/xml")

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def clear(self) -> None:
        with self._changed:
            self.received.clear()

    def wait_for(
        self, count: int, *, where: Callable[[WebhookRequest], bool] = lambda r: True, timeout: float = 15.0
    ) -> list[WebhookRequest]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                hits = [r for r in self.received if where(r)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(hits)}: {hits}")
                self._changed.wait(left)


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with ThreadedServer(receiver.app) as server:
        receiver.base_url = server.url
        yield receiver


@pytest.fixture
def receiver(_receiver_server: WebhookReceiver) -> Iterator[WebhookReceiver]:
    _receiver_server.clear()
    yield _receiver_server
    _receiver_server.clear()


def new_account_sid() -> str:
    return "AC" + random_hex(16)


@dataclass(frozen=True)
class MainAccount:
    """A bring-your-own main account: the sandbox accepts it on first use."""

    sid: str
    token: str


@pytest.fixture
def main_account() -> MainAccount:
    return MainAccount(new_account_sid(), random_hex(16))


ConnectorFactory = Callable[..., TwilioConnector]


@pytest.fixture
def connector_for(sandbox: Sandbox) -> Iterator[ConnectorFactory]:
    """Build connectors against the sandbox; ``connector_for(sid, token, **config)``."""
    built: list[TwilioConnector] = []

    def build(sid: str, token: str, *, timeout: float = 15.0, **config) -> TwilioConnector:
        connector = TwilioConnector(
            credentials={"account_sid": sid, "auth_token": token},
            config=config,
            base_url=sandbox.url,
            timeout=timeout,
        )
        built.append(connector)
        return connector

    yield build
    for connector in built:
        connector.close()


@pytest.fixture
def main_connector(connector_for: ConnectorFactory, main_account: MainAccount) -> TwilioConnector:
    return connector_for(main_account.sid, main_account.token)


@dataclass(frozen=True)
class Tenant:
    """A provisioned subaccount with one bought number, its webhooks on the receiver."""

    sid: str
    token: str
    number: str
    number_sid: str
    connector: TwilioConnector


@pytest.fixture
def tenant(
    main_connector: TwilioConnector, connector_for: ConnectorFactory, receiver: WebhookReceiver
) -> Tenant:
    sid, token = main_connector.create_subaccount("Clínica Sorriso")
    number = main_connector.find_available_numbers("BR", "11", limit=1)[0]
    number_sid = main_connector.buy_number(number, sms_url=receiver.url("/inbound"), account_sid=sid)
    connector = connector_for(sid, token, numbers=[number], channels=["sms", "whatsapp"])
    return Tenant(sid, token, number, number_sid, connector)
