"""aiosmtpd handlers and helpers shared by the SMTP tests."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from connectors.netguard import NetworkGuard
from connectors.smtp import SmtpConnector, SmtpCredentials

FROM_ADDRESS = "agenda@clinica-sorriso.com.br"
USERNAME = "agenda"
PASSWORD = "s3nha-do-relay"


class StoringHandler:
    """Accepts every message and keeps the envelope, like a relay's queue."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            self.envelopes.append(envelope)
        return "250 2.0.0 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]


class BusyHandler(StoringHandler):
    """Greylisting relay: refuses the data with a temporary 451."""

    async def handle_DATA(self, server, session, envelope) -> str:
        return "451 4.7.1 Greylisted, please try again later"


class UnknownUserHandler(StoringHandler):
    """Refuses the recipient for good with 550."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        return "550 5.1.1 <" + address + ">: Recipient address rejected: User unknown"


def authenticate(server, session, envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def create_connector(port: int, *, timeout: float = 5.0, allow_private: bool = True,
                     **overrides: Any) -> SmtpConnector:
    values = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": FROM_ADDRESS,
        "from_name": "Clínica Sorriso",
        "security": "none",
    } | overrides
    # the test relays listen on loopback, which only development allows
    return SmtpConnector(credentials=SmtpCredentials.model_validate(values), timeout=timeout,
                         network=NetworkGuard(allow_private=allow_private))
