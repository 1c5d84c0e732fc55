"""A file the processes without an HTTP port (relay, worker, beat) touch while their loop
runs, and the check a Kubernetes exec liveness probe runs against it.

    python -m hub.heartbeat /tmp/hub/heartbeat 60   # exit 0 if touched within 60 s

The check imports nothing but the standard library, so a probe costs milliseconds.
Set HUB_HEARTBEAT_FILE to turn the touching on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

TOUCH_EVERY_SECONDS = 5.0


def touch(path: Path) -> None:
    """Mark the process alive now."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


class Pulse:
    """Touches ``path`` at most every ``every`` seconds, from whatever loop calls ``beat``."""

    def __init__(self, path: Path | None, every: float = TOUCH_EVERY_SECONDS) -> None:
        self.path, self.every, self._last = path, every, 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if self.path is not None and now - self._last >= self.every:
            touch(self.path)
            self._last = now


class KeepAlive:
    """Calls ``renew`` every ``every`` seconds on a thread of its own while the ``with``
    block runs: how a worker shows the work it holds (claimed messages, dispatched
    events) is still in hand, so a lease can be short and a killed worker's work comes
    back soon. A failed renewal is logged and tried again at the next beat."""

    def __init__(self, renew: Callable[[], object], *, every: float, name: str) -> None:
        self.renew, self.every = renew, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew()
            except Exception as exc:  # a database hiccup: the lease still has two beats left
                logging.getLogger("hub.heartbeat").warning("lease renewal failed: %s", type(exc).__name__)


def age_seconds(path: Path) -> float | None:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m hub.heartbeat FILE MAX_AGE_SECONDS", file=sys.stderr)
        return 2
    path, max_age = Path(argv[0]), float(argv[1])
    age = age_seconds(path)
    if age is None:
        print(f"no heartbeat at {path}", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"heartbeat {age:.0f}s old (limit {max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - the probe's entry point
    sys.exit(main(sys.argv[1:]))
