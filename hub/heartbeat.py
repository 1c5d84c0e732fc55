"""A file the processes without an HTTP port (relay, worker, beat) touch while their loop
runs, and the check a Kubernetes exec liveness probe runs against it.

    python -m hub.heartbeat /tmp/hub/heartbeat 60   # exit 0 if touched within 60 s

The check imports nothing but the standard library, so a probe costs milliseconds.
Set HUB_HEARTBEAT_FILE to turn the touching on.
"""

from __future__ import annotations

import os
import sys
import time
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
