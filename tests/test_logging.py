"""Logs: the hub's level holds when an in-process worker starts (it used to be reset)."""

from __future__ import annotations

import io
import json
import logging

import structlog

from hub.logs import configure_logging
from hub.queue import EmbeddedWorker


def test_an_embedded_worker_leaves_the_hubs_log_level_and_handler_alone(runtime):
    # (tests/conftest.py puts the logging configuration back after the test)
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    worker = EmbeddedWorker(runtime).start()
    try:
        assert logging.getLogger().level == logging.INFO
        structlog.get_logger("hub.test").info("serving", url="http://127.0.0.1:8000")
        logging.getLogger("hub.test.stdlib").info("a standard-library logger says hello")
    finally:
        worker.stop()
    events = {json.loads(line)["event"] for line in stream.getvalue().splitlines() if line.startswith("{")}
    assert {"serving", "a standard-library logger says hello"} <= events, stream.getvalue()
