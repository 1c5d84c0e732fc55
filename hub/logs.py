"""Structured JSON logs (structlog) with request id and tenant id, and a processor
that redacts anything that looks like a secret before it is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|authorization|api[_-]?key|private|credential|signature|"
    r"master[_-]?key|cookie|sealed)",
    re.IGNORECASE,
)
# Keys that match the pattern above but name no secret.
_SAFE_KEYS = frozenset({"token_type", "request_id", "token_endpoint", "key_id", "kid"})
_SECRET_VALUE = re.compile(
    r"sealed:v1:[A-Za-z0-9_\-=]+"  # vault ciphertexts
    r"|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"  # JWTs
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/\-=]+"  # authorization headers
    r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+"  # Stripe keys
    r"|\bwhsec_[A-Za-z0-9]+"
    r"|\bhubsec_[A-Za-z0-9_\-]+"  # our API client secrets
    r"|\bya29\.[A-Za-z0-9_.\-]+"  # Google access tokens
    r"|\b1//[A-Za-z0-9_\-]{10,}"  # Google refresh tokens
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
)


# what tenants.vault.mask_secret produces: safe to show by design
_MASKED = re.compile(r"^.{0,2}….{0,4}$")


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with secrets replaced; ``key`` is the name it was logged under."""
    if key is not None and key not in _SAFE_KEYS and _SECRET_KEY.search(key):
        if isinstance(value, Mapping):
            return {k: redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, str) and _MASKED.match(value):
            return value
        return REDACTED
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact(v) for v in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the last line of defence before a log line is written."""
    return {k: (redact(v) if k == "event" else redact(v, k)) for k, v in event_dict.items()}


class _StderrHandler(logging.StreamHandler):
    """Writes to the stderr of configuration time, or to the current one once that was
    closed (a test's capture that ended). Not simply the current one: Celery's worker
    swaps sys.stderr for a proxy that logs, which would swallow every line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self._configured = sys.stderr

    @property  # type: ignore[override]
    def stream(self) -> Any:
        if getattr(self._configured, "closed", False):
            return sys.stderr
        return self._configured

    @stream.setter
    def stream(self, value: Any) -> None:
        self._configured = value


def configure_logging(level: str = "INFO", *, stream: Any = None) -> None:
    """JSON logs on stderr for structlog and the standard library alike (uvicorn, celery)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        # drop filtered-out events before any processor runs (the hot paths log a lot at DEBUG)
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # not cached: structlog.testing.capture_logs (and a later configure) must reach
        # module-level loggers already used; the lookup costs microseconds
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "celery"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the hub logs each request itself
