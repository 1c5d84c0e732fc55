"""Cursor pagination: ``?limit=&cursor=``, ordered by (created_at, id), opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from hub.errors import BadRequest

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
# the largest sequence number a cursor or an event id can name (PostgreSQL's BIGINT)
MAX_SEQUENCE = 2**63 - 1


class PageRead(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise BadRequest("cursor is not valid; use the next_cursor of a previous page",
                         code="invalid_cursor") from None


def decode_sequence_cursor(cursor: str) -> int:
    """A cursor that is a sequence number (the audit trail's ``seq``): ASCII digits
    within BIGINT, else a 400 — never a superscript digit or an overflow reaching SQL."""
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > MAX_SEQUENCE:
        raise BadRequest("cursor is not valid; use the next_cursor of a previous page", code="invalid_cursor")
    return int(cursor)


def paginate(session: Session, stmt: Select[Any], model: Any, *, limit: int, cursor: str | None) -> Page[Any]:
    """One page of ``stmt`` (already filtered) ordered by (created_at, id)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(model.created_at > created_at, and_(model.created_at == created_at, model.id > row_id))
        )
    rows = list(session.scalars(stmt.order_by(model.created_at, model.id).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return Page(rows, next_cursor)
