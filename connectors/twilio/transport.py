"""The HTTP client handed to the twilio SDK: redirectable, lean, and keeping what the SDK drops.

The SDK's own client goes through ``requests``, whose request preparation (runtime
``Protocol`` checks, settings merges) cost a delivery worker more CPU than the rest of
the call. This one speaks to urllib3 directly, as ``requests`` itself does underneath.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import certifi
import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response

_logger = logging.getLogger("twilio.http_client")
_JSON_TYPES = ("application/json", "application/scim+json")

# Every transport failure (timeouts, refused or dropped connections, TLS, proxies).
TransportError = urllib3.exceptions.HTTPError
# A call that got no answer in time: it may still have reached Twilio.
TransportTimeout = urllib3.exceptions.TimeoutError


def rebase(url: str, base_url: str) -> str:
    """``url`` with its scheme and host replaced by ``base_url``'s (whose path, if any,
    is kept as a prefix). Covers every Twilio domain and ``next_page_uri`` paging."""
    base = urlsplit(base_url)
    target = urlsplit(url)
    path = base.path.rstrip("/") + target.path
    return urlunsplit((base.scheme, base.netloc, path, target.query, target.fragment))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedirectedHttpClient(HttpClient):
    """Sends every SDK request to ``base_url`` when it is set (None: the real Twilio).

    It also keeps the last response, because ``TwilioRestException`` carries no headers
    and a 429's ``Retry-After`` is needed to schedule the retry. One instance serves one
    connector object, which one thread uses at a time (hub.providers pools them per thread).

    Like ``requests``: the environment's HTTP(S)_PROXY / NO_PROXY are honoured (never for
    a loopback sandbox), certificates are checked against certifi's bundle, and nothing
    is retried (Twilio has no idempotency key: a blind resend could send twice).
    """

    def __init__(self, *, base_url: str | None, timeout: float) -> None:
        super().__init__(_logger, False, timeout)
        self.base_url = base_url
        self.last_response: Response | None = None
        self._pools: dict[str, urllib3.PoolManager] = {}

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.last_response = None
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(timeout)
        if self.base_url:
            url = rebase(url, self.base_url)
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
        sent = {"Accept-Encoding": "gzip", **(headers or {})}
        if auth:
            sent.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        body = None
        if data is not None:
            if sent.get("Content-Type") in _JSON_TYPES:
                body = json.dumps(data).encode()
            else:
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
                body = urlencode(data, doseq=True).encode()
        if self.logger.isEnabledFor(logging.INFO):
            self.log_request({"method": method.upper(), "url": url, "params": params, "headers": sent})
        answer = self._pool(url).request(
            method.upper(), url, body=body, headers=sent, timeout=urllib3.Timeout(total=timeout),
            redirect=allow_redirects, retries=False,
        )
        if self.logger.isEnabledFor(logging.INFO):
            self.log_response(answer.status, answer)
        response = Response(answer.status, answer.data.decode("utf-8", "replace"), answer.headers)
        self.last_response = response
        return response

    def _pool(self, url: str) -> urllib3.PoolManager:
        """One pool per host: direct, or through the environment's proxy for that host."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self._pools:
            proxy = None
            if not _is_loopback(host) and not proxy_bypass(host):
                proxy = getproxies().get(parts.scheme)
            options: dict[str, Any] = {"maxsize": 2, "ca_certs": certifi.where()}
            self._pools[host] = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        return self._pools[host]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.clear()
        self._pools.clear()
