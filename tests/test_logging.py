"""Logs: the hub's level holds when an in-process worker starts (it used to be reset)."""

from __future__ import annotations

import io
import json
import logging

import structlog

from hub.logs import configure_logging
from hub.queue import EmbeddedWorker


def test_an_embedded_worker_leaves_the_hubs_log_level_and_handler_alone(runtime):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", stream=stream)
        worker = EmbeddedWorker(runtime).start()
        try:
            assert root.level == logging.INFO
            structlog.get_logger("hub.test").info("serving", url="http://127.0.0.1:8000")
            logging.getLogger("hub.test.stdlib").info("a standard-library logger says hello")
        finally:
            worker.stop()
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
        assert {"serving", "a standard-library logger says hello"} <= {line["event"] for line in lines}, stream.getvalue()
    finally:
        root.handlers, level = saved
        root.setLevel(level)
