"""The Calendar v3 client: google-api-python-client over httplib2, pointed at a base URL."""

from __future__ import annotations

from typing import Any

import google.auth.credentials
import google_auth_httplib2
import httplib2
from googleapiclient.discovery import build


def calendar_service(api_base: str, credentials: google.auth.credentials.Credentials, *, timeout: float) -> Any:
    """A ``calendar`` v3 Resource; ``api_base`` ends in ``/calendar/v3/``.

    The static discovery document ships with the library, so no discovery request is
    made. ``AuthorizedHttp`` adds the bearer token, refreshes it through the
    credentials when expired, and once more on a 401.
    """
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    return build(
        "calendar",
        "v3",
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": api_base},
    )
