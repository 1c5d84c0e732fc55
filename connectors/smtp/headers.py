"""One rule for every header value the hub writes into an e-mail: it stays one header.

The ``email`` package decodes RFC 2047 encoded-words when a header value is set
(``=?utf-8?q?Hi=0D=0ABcc:_x?=`` becomes ``Hi\\r\\nBcc: x``) and, before Python 3.13's
``verify_generated_headers``, writes the decoded text back out raw: a subject, a display
name or a List-Unsubscribe URL could add ``Bcc:``, a second ``From:`` or a new
``Content-Type`` and body. So a value is judged by what it *means*, not by how it is
spelled: encoded-words are decoded (again and again, so a word hiding another word does
not pass) and the text must hold no control character and no line or paragraph
separator. The API checks subjects with :func:`header_text_problem` at its edge; the
composer checks every header it sets and then the whole generated message.
"""

from __future__ import annotations

import email.policy
import unicodedata
from email.errors import HeaderParseError

# str.splitlines() also breaks on these, and so do some readers of mail
_LINE_SEPARATORS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# how many layers of encoded-words we unwrap before calling a value hostile
_MAX_DECODES = 4
_HEADERS = email.policy.SMTP.header_factory


def decoded(value: str, *, name: str = "subject") -> str:
    """``value`` as a mail reader shows it: encoded-words decoded, as often as they nest.

    Raises ValueError when it keeps decoding to something new (a word in a word in a word …)
    or the ``email`` package cannot parse it."""
    current = value
    for _ in range(_MAX_DECODES):
        try:
            following = str(_HEADERS(name, current))
        except (ValueError, HeaderParseError, IndexError) as exc:
            raise ValueError(f"is not a valid header value ({exc})") from None
        if following == current:
            return current
        current = following
    raise ValueError("nests RFC 2047 encoded-words too deeply")


def _bad_character(text: str) -> str | None:
    for ch in text:
        if ch in "\r\n":
            return "a line break"
        if ch == "\x00":
            return "a NUL character"
        if ch in _LINE_SEPARATORS or unicodedata.category(ch) == "Cc" and ch != "\t":
            return f"a control character (U+{ord(ch):04X})"
    return None


def header_text_problem(value: str, *, name: str = "subject") -> str | None:
    """Why ``value`` cannot be the text of header ``name``, or None when it can.

    Checked on the value as written and after decoding its RFC 2047 encoded-words."""
    bad = _bad_character(value)
    if bad is not None:
        return f"contains {bad}"
    try:
        text = decoded(value, name=name)
    except ValueError as exc:
        return str(exc)
    bad = _bad_character(text)
    if bad is not None:
        return f"contains {bad} once its RFC 2047 encoded-words are decoded"
    return None


def check_header_text(value: str, *, name: str = "subject") -> str:
    """``value`` unchanged, or ValueError saying why it cannot be a header's text (for validators)."""
    problem = header_text_problem(value, name=name)
    if problem is not None:
        raise ValueError(problem)
    return value


def header_name_problem(name: str) -> str | None:
    """RFC 5322 §2.2: a field name is printable US-ASCII except the colon."""
    if not name or any(not 33 <= ord(ch) <= 126 or ch == ":" for ch in name):
        return "is not a valid header name"
    return None
