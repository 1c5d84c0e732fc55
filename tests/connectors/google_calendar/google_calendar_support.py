"""Helpers shared by the Google Calendar tests (importable: this folder is on sys.path)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

REDIRECT_URI = "http://127.0.0.1:9/oauth/google/callback"  # never called: tests read the redirect
PUSH_PATH = "/webhooks/google_calendar"


def query_of(redirect_url: str) -> dict[str, str]:
    """The query of a redirect URL, one value per key."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(redirect_url).query).items()}
