"""How Meta names a WhatsApp user: a phone number (``wa_id``) and/or a business-scoped
user id (BSUID).

Since April 2026 every messages webhook carries the user's BSUID (``contacts[].user_id``,
``messages[].from_user_id``), and a user who adopted a username may come with no phone
number at all (``from`` and ``wa_id`` omitted). A BSUID is the user's ISO 3166 country
code, a period, and up to 128 alphanumerics (``BR.1502576394655843``); a parent BSUID
shared across linked portfolios has ``ENT`` in between (``US.ENT.11815799212886844830``).
The Messages API reaches such a user with ``recipient`` instead of ``to`` (``to`` wins
when both are given). Source: Meta, "Business-scoped user IDs",
https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/
"""

from __future__ import annotations

import re
from typing import Final

_BSUID: Final = re.compile(r"\A[A-Z]{2}(?:\.ENT)?\.[A-Za-z0-9]{1,128}\Z")


def is_bsuid(value: str | None) -> bool:
    """Whether ``value`` is a business-scoped user id (never a phone number: it has letters)."""
    return bool(value) and _BSUID.match(value.strip()) is not None
