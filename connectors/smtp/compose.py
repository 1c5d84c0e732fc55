"""Build the RFC 5322 message for one ``OutboundMessage`` (stdlib ``email`` only)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from html.parser import HTMLParser

from connectors.base import OutboundMessage, PermanentProviderError
from connectors.smtp.headers import header_name_problem, header_text_problem

# Headers we set from first-class fields; letting ``headers`` override them would let a
# caller forge the sender or break the MIME structure.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
ONE_CLICK = "List-Unsubscribe=One-Click"


class _TextOfHtml(HTMLParser):
    """Visible text of an HTML body, for the text/plain part when only HTML was given."""

    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "head"}:
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head"} and self._skip:
            self._skip -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def text_of_html(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return parser.text()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def message_id_for(*, from_address: str, idempotency_key: str | None) -> str:
    """A fresh Message-ID, or a stable one per idempotency key: a retried send then
    carries the same id, which mailbox providers use to fold duplicates."""
    domain = domain_of(from_address)
    if not idempotency_key:
        return make_msgid(domain=domain)
    digest = hashlib.sha256(f"{from_address}\0{idempotency_key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _check_header(name: str, value: str) -> None:
    """Refuse a header that could become more than one (see ``connectors.smtp.headers``)."""
    problem = header_name_problem(name) or header_text_problem(value, name=name)
    if problem is not None:
        raise PermanentProviderError(f"header {name!r} {problem}", code="invalid_header")


def _set_header(email: EmailMessage, name: str, value: object) -> None:
    """Set one header, judged both as given and as the ``email`` package will write it."""
    _check_header(name, str(value))
    email[name] = value
    _check_header(name, str(email[name]))


def verify_generated_headers(email: EmailMessage) -> bytes:
    """The message as it goes on the wire, refused unless its header block holds exactly the
    headers we set: the last line of defence should a value still turn into a new header."""
    wire = email.as_bytes()
    written = Counter(name.lower() for name in BytesHeaderParser(policy=email.policy).parsebytes(wire))
    meant = Counter(name.lower() for name in email)
    if written != meant:
        extra = sorted((written - meant).keys()) or sorted((meant - written).keys())
        raise PermanentProviderError(f"a header value turned into other headers ({', '.join(extra)})",
                                     code="invalid_header")
    return wire


def compose_email(
    message: OutboundMessage,
    *,
    from_address: str,
    from_name: str | None,
    message_id: str,
) -> EmailMessage:
    """multipart/alternative (text + HTML) or text/plain, with our headers on top.

    Built on ``email.policy.SMTP`` (CRLF, folded and RFC 2047-encoded as needed); every
    value is checked after decoding its encoded-words, so none can start another header."""
    email = EmailMessage(policy=SMTP_POLICY)
    problem = header_text_problem(from_name or "")
    if problem is not None:
        raise PermanentProviderError(f"the From display name {problem}", code="invalid_header")
    try:
        _set_header(email, "From", Address(display_name=from_name or "", addr_spec=from_address))
        _set_header(email, "To", message.to)
        recipients = email["To"].addresses
        if len(recipients) != 1 or "@" not in recipients[0].addr_spec:
            raise ValueError(f"{message.to!r} is not exactly one e-mail address")
        if message.reply_to:
            _set_header(email, "Reply-To", message.reply_to)
    except (ValueError, IndexError) as exc:  # the email package's address parser raises both
        raise PermanentProviderError(f"invalid address: {exc}", code="invalid_address") from exc
    _set_header(email, "Subject", message.subject or "")
    _set_header(email, "Date", formatdate(usegmt=True))
    _set_header(email, "Message-ID", message_id)
    _add_extra_headers(email, message.headers)

    text = message.body or (text_of_html(message.html) if message.html else "")
    if message.media_urls:
        # e-mail gets links, not attachments: we never fetch remote files into a message
        text = "\n\n".join(filter(None, [text, "\n".join(message.media_urls)]))
    email.set_content(text or " ", subtype="plain", charset="utf-8")
    if message.html:
        email.add_alternative(message.html, subtype="html", charset="utf-8")
    return email


def _add_extra_headers(email: EmailMessage, headers: Mapping[str, str]) -> None:
    names = {name.lower() for name in headers}
    for name, value in headers.items():
        _check_header(name, value)
        if name.lower() in RESERVED_HEADERS:
            raise PermanentProviderError(f"header {name!r} is set by the connector", code="reserved_header")
        _set_header(email, name, value)
    # RFC 8058: one-click unsubscribe needs an HTTPS URI in List-Unsubscribe
    if "list-unsubscribe" in names and "list-unsubscribe-post" not in names:
        value = next(v for k, v in headers.items() if k.lower() == "list-unsubscribe")
        if "<https://" in value.lower():
            _set_header(email, "List-Unsubscribe-Post", ONE_CLICK)
