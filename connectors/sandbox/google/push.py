"""Push delivery: notifications leave from one daemon thread, in the order they were
numbered, so neither the event loop nor the caller that changed a calendar waits on the
receiver.

Headers as Google sends them (https://developers.google.com/workspace/calendar/api/guides/push,
"Understand the notification message format"): ``X-Goog-Channel-ID``,
``X-Goog-Channel-Token`` (when the channel has one), ``X-Goog-Channel-Expiration``,
``X-Goog-Resource-ID``, ``X-Goog-Resource-URI``, ``X-Goog-Resource-State`` (``sync``
first, then ``exists``) and ``X-Goog-Message-Number``; the body is empty. A failed
delivery is logged, not retried (Google retries with exponential backoff; the hub's
nightly sync covers a lost one).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class PushRecord:
    channel_id: str
    address: str
    resource_state: str
    message_number: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class Push:
    address: str
    headers: dict[str, str]
    channel_id: str
    resource_state: str
    message_number: int


class PushSender:
    """Delivers push notifications in order from one daemon thread."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._queue: queue.Queue[Push | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition()
        self.log: list[PushRecord] = []

    def submit(self, push: Push) -> None:
        with self._idle:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="google-sandbox-push", daemon=True)
                self._thread.start()
            self._pending += 1
        self._queue.put(push)

    def _run(self) -> None:
        # trust_env=False: a proxy from the environment must not intercept local deliveries
        with httpx.Client(timeout=self._timeout, trust_env=False) as client:
            while (push := self._queue.get()) is not None:
                status: int | None = None
                error: str | None = None
                try:
                    status = client.post(push.address, headers=push.headers, content=b"").status_code
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                record = PushRecord(
                    push.channel_id, push.address, push.resource_state, push.message_number, status, error
                )
                with self._idle:
                    self.log.append(record)
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(self._timeout + 1)

