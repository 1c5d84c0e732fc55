"""The Google sandbox on 127.0.0.1, a push receiver, and connected-account factories.

One sandbox serves the whole module tree; every test works in its own fresh account,
so tests stay independent without restarting servers.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from google_calendar_support import PUSH_PATH, REDIRECT_URI, query_of

from connectors.base import WebhookRequest
from connectors.google_calendar import (
    GoogleCalendarConnector,
    GoogleCalendarCredentials,
    GoogleOAuth,
    GoogleOAuthClient,
)
from connectors.sandbox.app import create_sandbox_app
from connectors.sandbox.google import GoogleSandbox
from connectors.sandbox.server import ThreadedServer


@dataclass
class Sandbox:
    url: str
    state: GoogleSandbox


@dataclass
class PushReceiver:
    """Records every POST made to it, as the hub's webhook ingress would see it."""

    url: str
    requests: list[WebhookRequest] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def record(self, request: WebhookRequest) -> None:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    def for_channel(self, channel_id: str) -> list[WebhookRequest]:
        with self._arrived:
            return [r for r in self.requests if r.headers.get("x-goog-channel-id") == channel_id]

    def wait_for(self, channel_id: str, count: int, timeout: float = 15.0) -> list[WebhookRequest]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(got := [r for r in self.requests if r.headers.get("x-goog-channel-id") == channel_id]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            return got


@pytest.fixture(scope="session")
def _servers() -> Iterator[tuple[Sandbox, PushReceiver]]:
    app = create_sandbox_app()
    receiver_app = FastAPI()
    receiver = PushReceiver(url="")

    @receiver_app.post(PUSH_PATH)
    async def receive(request: Request) -> Response:
        receiver.record(
            WebhookRequest(
                method=request.method,
                url=str(request.url),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.body(),
                query=dict(request.query_params),
            )
        )
        return Response(status_code=200)

    with ThreadedServer(app) as sandbox_server, ThreadedServer(receiver_app) as receiver_server:
        receiver.url = receiver_server.url + PUSH_PATH
        app.state.google.trust_local_origin(receiver.url)  # an http receiver, as the hub is in tests
        yield Sandbox(sandbox_server.url, app.state.google), receiver
        app.state.google.close()


@pytest.fixture
def sandbox(_servers: tuple[Sandbox, PushReceiver]) -> Iterator[Sandbox]:
    box = _servers[0]
    yield box
    box.state.clear_failures()


@pytest.fixture
def receiver(_servers: tuple[Sandbox, PushReceiver]) -> PushReceiver:
    return _servers[1]


@pytest.fixture
def oauth_client(sandbox: Sandbox) -> GoogleOAuthClient:
    return GoogleOAuthClient.for_sandbox(sandbox.url, redirect_uri=REDIRECT_URI)


@pytest.fixture
def oauth(oauth_client: GoogleOAuthClient) -> GoogleOAuth:
    return GoogleOAuth(oauth_client, timeout=15.0)


@pytest.fixture
def connect(sandbox: Sandbox, oauth: GoogleOAuth) -> Callable[..., GoogleCalendarCredentials]:
    """Connect a fresh account (programmatic consent + real code exchange)."""

    def connect_account(*, calendars: tuple[str, ...] = ()) -> GoogleCalendarCredentials:
        email = f"clinic-{uuid.uuid4().hex[:10]}@sandbox.example"
        sandbox.state.seed_account(email, calendars=calendars)
        url, verifier = oauth.authorization_url(state="s", login_hint=email)
        return oauth.exchange_code(query_of(sandbox.state.approve(url))["code"], verifier)

    return connect_account


@pytest.fixture
def connector_for(sandbox: Sandbox, oauth_client: GoogleOAuthClient) -> Callable[..., GoogleCalendarConnector]:
    def build(credentials: GoogleCalendarCredentials, **kwargs: object) -> GoogleCalendarConnector:
        options: dict[str, object] = {"timeout": 15.0} | kwargs
        return GoogleCalendarConnector(
            credentials=credentials, base_url=sandbox.url, oauth_client=oauth_client, **options
        )

    return build


@pytest.fixture
def calendar(
    connect: Callable[..., GoogleCalendarCredentials], connector_for: Callable[..., GoogleCalendarConnector]
) -> GoogleCalendarConnector:
    """A connector on a freshly connected, empty account."""
    return connector_for(connect())
