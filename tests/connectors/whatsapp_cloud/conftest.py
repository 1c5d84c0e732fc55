"""The Meta sandbox and a tiny webhook receiver, each on a real server on 127.0.0.1.

The receiver stands in for the hub's ingress: it runs the connector's own
``verify_subscription`` / ``verify`` on what arrives and keeps what passed.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from whatsapp_cloud_support import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    WABA_ID,
    WebhookReceiver,
    create_credentials,
)

from connectors.sandbox.meta import MetaSandbox, router
from connectors.sandbox.server import ThreadedServer
from connectors.whatsapp_cloud import WhatsAppCloudConnector


@pytest.fixture(scope="session")
def meta_state() -> MetaSandbox:
    return MetaSandbox(status_delay=0.01)


@pytest.fixture(scope="session")
def meta_server(meta_state: MetaSandbox):
    app = FastAPI()
    app.include_router(router(meta_state))
    with ThreadedServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def receiver_server():
    receiver = WebhookReceiver()
    with ThreadedServer(receiver.app) as server:
        server.receiver = receiver  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def receiver(receiver_server) -> WebhookReceiver:
    receiver_server.receiver.clear()
    return receiver_server.receiver


@pytest.fixture
def sandbox(meta_state: MetaSandbox, meta_server, receiver_server) -> MetaSandbox:
    """A fresh sandbox whose test number posts webhooks to the receiver."""
    meta_state.reset()
    meta_state.configure(PHONE_NUMBER_ID, f"{receiver_server.url}/webhooks/whatsapp_cloud", APP_SECRET, waba_id=WABA_ID)
    return meta_state


@pytest.fixture
def connector(sandbox: MetaSandbox, meta_server) -> WhatsAppCloudConnector:
    return WhatsAppCloudConnector(credentials=create_credentials(), base_url=meta_server.url, timeout=15.0)
