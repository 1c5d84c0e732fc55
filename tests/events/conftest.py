"""A hub served on a real port (the stream needs a real HTTP connection: the test
client buffers whole responses) and an SSE client that reads it from a thread."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from hub.db import transaction
from hub.events.ids import event_ids
from hub.events.service import publish_event
from hub.settings import Settings
from tests.support import bearer, create_client, create_tenant, get_token


@dataclass
class Received:
    id: str | None  # opaque (hub.events.ids)
    event: str | None
    data: dict[str, Any] | None
    comment: str | None = None


@dataclass
class SSEClient:
    """Reads a ``text/event-stream`` in a thread; ``next()`` hands out what came."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    content_type: str | None = None
    retry: int | None = None
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._opened = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the stream did not answer"

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers, params=self.params) as response:
                self._response = response
                self.status, self.content_type = response.status_code, response.headers.get("content-type")
                self._opened.set()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if fields:
                            self._inbox.put(Received(fields.get("id"),
                                                     fields.get("event"),
                                                     json.loads(fields["data"]) if "data" in fields else None))
                        fields = {}
                    elif line.startswith(":"):
                        self._inbox.put(Received(None, None, None, comment=line[1:].strip()))
                    elif line.startswith("retry:"):
                        self.retry = int(line.split(":", 1)[1])
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError, OSError):
            pass  # closed by the test
        finally:
            self._opened.set()
            self.closed.set()

    def next(self, timeout: float = 10.0, *, comments: bool = False) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._inbox.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"nothing received from the stream in {timeout}s") from None
            if comments or item.comment is None:
                return item

    def events(self, n: int, timeout: float = 10.0) -> list[Received]:
        return [self.next(timeout) for _ in range(n)]

    def nothing_for(self, seconds: float) -> bool:
        """True when no event (comments aside) arrives within ``seconds``."""
        try:
            self.next(seconds)
        except AssertionError:
            return True
        return False

    def body(self) -> dict[str, Any]:
        """The JSON body of a stream that was refused."""
        assert self._response is not None
        self.closed.wait(5)
        return json.loads(self._response.read()) if not self._response.is_closed else {}

    def close(self) -> None:
        """Hang up, as a browser leaving the page does."""
        if self._response is not None and not self.closed.is_set():
            # closing the response from this thread does not wake the reader blocked in recv()
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._response.close()
        self._client.close()
        self._thread.join(5)


def commit_event(runtime, tenant_id: uuid.UUID, type: str = "message.received", **data: Any) -> int:
    """One event, committed as a hook commits it; its id."""
    with transaction(runtime.session_factory) as session:
        return publish_event(session=session, tenant_id=tenant_id, type=type, data=data).id


class ServedHub:
    """``create_app(runtime)`` on 127.0.0.1; tenants and tokens made as a user makes them."""

    def __init__(self, runtime) -> None:
        from connectors.sandbox.server import ThreadedServer
        from hub.app import create_app

        self.runtime = runtime
        self.server = ThreadedServer(create_app(runtime=runtime)).start()
        self.url = self.server.url
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self._streams: list[SSEClient] = []

    def tenant(self, slug: str, scopes: list[str] | None = None) -> tuple[uuid.UUID, str]:
        """A new tenant and an access token of its own: (tenant_id, token)."""
        tenant_id = create_tenant(self.runtime, slug)
        return tenant_id, get_token(self.http, create_client(self.runtime, tenant_id, scopes))

    def stream(self, token: str | None = None, *, query_token: bool = False, **params: Any) -> SSEClient:
        headers = {}
        if token and query_token:
            params["access_token"] = token
        elif token:
            headers = bearer(token)
        if "last_event_id_header" in params:
            headers["Last-Event-ID"] = str(params.pop("last_event_id_header"))
        client = SSEClient(f"{self.url}/v1/events/stream", headers=headers, params=params)
        self._streams.append(client)
        return client

    def publish(self, tenant_id: uuid.UUID, type: str = "message.received", **data: Any) -> str:
        """Commit one event; the id its tenant sees."""
        return self.public(tenant_id, commit_event(self.runtime, tenant_id, type, **data))

    def public(self, tenant_id: uuid.UUID, sequence: int) -> str:
        return event_ids(self.runtime).public(tenant_id, sequence)

    def stop(self) -> None:
        for stream in self._streams:
            stream.close()
        self.http.close()
        self.server.stop()


def stream_settings(settings: Settings, **overrides: Any) -> Settings:
    """The suite's settings, with short heartbeats (and ``overrides``)."""
    return settings.model_copy(update={"events_heartbeat_seconds": 0.5, "events_retry_ms": 1500, **overrides})


@pytest.fixture
def served(settings):
    from hub.runtime import build_runtime

    runtime = build_runtime(stream_settings(settings, events_max_streams_per_tenant=3))
    hub = ServedHub(runtime)
    yield hub
    hub.stop()
    runtime.close()
