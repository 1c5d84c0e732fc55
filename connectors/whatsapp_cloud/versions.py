"""Graph API versions and when Meta retires them.

Every Cloud API call names a version (``/v26.0/...``), and a call on a retired version
fails. Meta publishes each version's release and expiration dates; a version lives at
least two years and expires when a newer one has been out long enough. Source: Meta,
"Graph API — Versions", https://developers.facebook.com/docs/graph-api/changelog/versions/
(as read on 2026-12-06). Newer versions than this table knows have no announced end.
"""

from __future__ import annotations

from datetime import date
from typing import Final

# the version new installs use and the platform default (HUB_WHATSAPP_GRAPH_VERSION)
CURRENT_VERSION: Final = "v26.0"

# version -> expiration date (None: not announced yet)
EXPIRES: Final[dict[str, date | None]] = {
    "v26.0": None,
    "v25.0": date(2028, 7, 29),
    "v24.0": date(2028, 2, 18),
    "v23.0": date(2027, 10, 8),
    "v22.0": date(2027, 5, 20),
    "v21.0": date(2027, 1, 21),
    "v20.0": date(2026, 9, 24),
    "v19.0": date(2026, 5, 21),
    "v18.0": date(2026, 1, 26),
    "v17.0": date(2025, 9, 12),
    "v16.0": date(2025, 5, 14),
}


def _number(version: str) -> tuple[int, int]:
    major, _, minor = version.lstrip("v").partition(".")
    return int(major), int(minor or 0)


def expires_on(version: str) -> date | None:
    """When ``version`` stops working: its published date; None when not announced (a
    current or newer version). A version older than the table is long gone."""
    if version in EXPIRES:
        return EXPIRES[version]
    oldest = min(EXPIRES, key=_number)
    return EXPIRES[oldest] if _number(version) < _number(oldest) else None
