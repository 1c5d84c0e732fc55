"""Refuse NUL characters (U+0000) at the API's edge.

PostgreSQL text and JSONB cannot hold U+0000, so a NUL in a query parameter, a path
segment or a JSON string used to travel all the way to the database and come back
as a 500 — after whatever the route had done before its first write. No field of
this API means a NUL, so every request carrying one is refused before any route
runs: a 400 naming the parameter, or a 422 naming the JSON field, like any other
invalid input. (Provider webhooks take their own lane and are scrubbed where they
are stored; see ``hub.db.dump_json``.)
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse

# A NUL in JSON text: the raw byte, or the escape \u0000 not itself escaped (\\u0000
# is the six characters "\u0000", which are fine).
_JSON_NUL = re.compile(rb"\x00|(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_QUERY_NUL = re.compile(rb"%00|\x00")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _json_path_of_nul(value: Any, path: str = "") -> str | None:
    """Where in a decoded JSON document the first NUL is (``contact.name``, ``to[2]``)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where or "body"
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if "\x00" in key:
                    return f"{where}.{key!r}" if where else repr(key)
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _is_json(scope: dict) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return False


class RejectNulCharacters:
    """ASGI middleware: 400/422 for a NUL anywhere in the path, the query or a JSON body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await _error(400, "nul_character", "the path contains a NUL character (U+0000)")(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if query and _QUERY_NUL.search(query):
            names = [name for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                     if "\x00" in name or "\x00" in value]
            where = f"query parameter {names[0]!r}" if names else "the query string"
            await _error(400, "nul_character", f"{where} contains a NUL character (U+0000), which no parameter "
                         "accepts")(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        await self._guard_json_body(scope, receive, send)

    async def _guard_json_body(self, scope: dict, receive: Any, send: Any) -> None:
        # A JSON body is read whole (routes read it whole anyway, and its size is capped
        # upstream) so a NUL is found before the route runs, then replayed to the route.
        messages: list[dict] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _JSON_NUL.search(body):
            try:
                where = _json_path_of_nul(json.loads(body))
            except (ValueError, RecursionError):
                where = None  # not JSON after all: the route's own parsing answers
            if where is not None:
                await _error(422, "validation_error", f"{where}: contains a NUL character (U+0000), which no "
                             "field accepts")(scope, receive, send)
                return
        pending = list(messages)

        async def replay() -> dict:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)

