"""The security headers of every response, in one place.

Every answer says ``X-Content-Type-Options: nosniff`` (a JSON error echoing input is
never sniffed into HTML). An HTML page also gets a Content-Security-Policy, a
Referrer-Policy and ``X-Frame-Options`` — the strict ones below unless the route sent
its own (the API docs load their scripts from the hub: ``DOCS_PAGE_HEADERS``)."""

from __future__ import annotations

from hub.asgi import Headers, ResponseHeadersMiddleware

# A page that loads nothing, is framed by nobody, posts nowhere and leaks no URL
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
HTML_PAGE_HEADERS = {
    "Content-Security-Policy": STRICT_CSP,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Swagger UI and ReDoc: scripts and styles from the hub itself (and their inline boot
# script), the schema fetched from the hub, ReDoc's worker from a blob
DOCS_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}
NOSNIFF = (b"x-content-type-options", b"nosniff")


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus nosniff, and the page headers when the body is HTML, none doubled."""
    present = {name.lower() for name, _ in headers}
    extra = [] if NOSNIFF[0] in present else [NOSNIFF]
    content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
    if content_type.lower().startswith(b"text/html"):
        extra += [(name.lower().encode(), value.encode()) for name, value in HTML_PAGE_HEADERS.items()
                  if name.lower().encode() not in present]
    return [*headers, *extra] if extra else headers


class SecurityHeadersMiddleware(ResponseHeadersMiddleware):
    """ASGI middleware: ``with_security_headers`` on every HTTP response."""

    def headers_for(self, scope: dict, headers: Headers) -> Headers:
        return with_security_headers(headers)
