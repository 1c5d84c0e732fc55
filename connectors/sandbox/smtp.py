"""An SMTP sink for the sandbox: e-mail works in `make run` like the other channels.

A real SMTP server (aiosmtpd, RFC 5321) on 127.0.0.1 that accepts every message
and keeps it, as a catch-all relay (MailHog, Mailpit) does. It starts on first use:
``GET /_sandbox/smtp`` answers ``{host, port}`` — the hub asks it when it is in
sandbox mode without ``HUB_SMTP_URL`` and uses it as the platform relay. What it
took is listed by ``GET /_sandbox/smtp/messages`` (headers, text and HTML parts
as a mail client would show them) and cleared by ``DELETE``.

No AUTH and no TLS (``security: none``): it only ever listens on loopback.
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from fastapi import APIRouter

from connectors.sandbox.server import free_port

CONTROL = "/_sandbox/smtp"
# what the sink keeps; the oldest go first (a long `make run` does not grow forever)
KEEP = 500


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    messages: list[dict[str, Any]] = field(default_factory=list)
    _controller: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def address(self) -> tuple[str, int]:
        """Where it listens, starting it if need be. (A method: aiosmtpd looks its
        handler's attributes over, and a property that starts the server would deadlock.)"""
        self.start()
        return self.host, self._controller.port

    def start(self) -> SmtpSink:
        with self._lock:
            if self._controller is None:
                from aiosmtpd.controller import Controller

                # a fixed server name: the default, socket.getfqdn(), can wait on DNS
                controller = Controller(self, hostname=self.host, port=free_port(self.host),
                                        server_hostname="smtp.sandbox.hub.test", ready_timeout=10.0)
                controller.start()
                self._controller = controller
        return self

    def stop(self) -> None:
        with self._lock:
            if self._controller is not None:
                self._controller.stop()
                self._controller = None

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        parsed: EmailMessage = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = parsed.get_body(("plain",))
        html = parsed.get_body(("html",))
        kept = {
            "received_at": datetime.now(UTC).isoformat(),
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "headers": [[name, str(value)] for name, value in parsed.items()],
            "subject": str(parsed.get("Subject", "")),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        with self._lock:
            self.messages.append(kept)
            del self.messages[:-KEEP]
        return "250 2.0.0 Message accepted for delivery"

    def listed(self, to: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if to is None or to.lower() in (r.lower() for r in m["rcpt_to"])]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


def router(sink: SmtpSink) -> APIRouter:
    api = APIRouter()

    @api.get(CONTROL)
    def address() -> dict:
        """Where the sink listens (it starts on this first call)."""
        host, port = sink.address()
        return {"host": host, "port": port, "security": "none"}

    @api.get(f"{CONTROL}/messages")
    def messages(to: str | None = None) -> dict:
        return {"messages": sink.listed(to)}

    @api.delete(f"{CONTROL}/messages", status_code=204)
    def clear() -> None:
        sink.clear()

    return api
