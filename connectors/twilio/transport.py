"""The HTTP client handed to the twilio SDK: redirectable, and keeping what the SDK drops."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response


def rebase(url: str, base_url: str) -> str:
    """``url`` with its scheme and host replaced by ``base_url``'s (whose path, if any,
    is kept as a prefix). Covers every Twilio domain and ``next_page_uri`` paging."""
    base = urlsplit(base_url)
    target = urlsplit(url)
    path = base.path.rstrip("/") + target.path
    return urlunsplit((base.scheme, base.netloc, path, target.query, target.fragment))


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedirectedHttpClient(TwilioHttpClient):
    """Sends every SDK request to ``base_url`` when it is set (None: the real Twilio).

    It also keeps the last response, because ``TwilioRestException`` carries no headers
    and a 429's ``Retry-After`` is needed to schedule the retry. One instance serves one
    connector object, which one thread uses at a time (hub.providers pools them per thread).
    """

    def __init__(self, *, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url
        self.last_response: Response | None = None
        if base_url and _is_loopback(base_url) and self.session is not None:
            # an HTTP(S)_PROXY from the environment must not capture a local sandbox
            self.session.trust_env = False

    def request(
        self,
        method: str,
        url: str,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.last_response = None
        if self.base_url:
            url = rebase(url, self.base_url)
        response = super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self.last_response = response
        return response

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
