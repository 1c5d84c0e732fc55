"""SMS segment counting, GSM-7 or UCS-2, the way carriers split (and bill) a long message.

Each segment of a concatenated SMS loses room to its 6-byte UDH, so the
per-segment size drops from 160 to 153 septets (GSM-7) or from 70 to 67 UTF-16
code units (UCS-2). A character is never split across segments: a GSM-7
extension character (ESC + code) or a UTF-16 surrogate pair that would straddle
the boundary moves whole to the next segment, which can cost one segment more
than plain division says.

Note for pt-BR: only `Ç` (capital) is in the GSM-7 table; `ç ã õ á â ê í ó ô ú`
are not, so most Portuguese text goes out as UCS-2 (70 characters a segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Encoding = Literal["GSM-7", "UCS-2"]

# The most SMS segments one message may take. Meant to be per tenant, but tenants have
# no column for it yet: every tenant gets this one.
MAX_SMS_SEGMENTS: Final = 10

# 3GPP TS 23.038 default alphabet, positions 0x00-0x7F, without 0x1B (the escape to
# the extension table, not a character of its own).
GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039eÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets (ESC + code). Form feed is in the table too.
GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")

_LIMITS: Final[dict[Encoding, tuple[int, int]]] = {
    # (single-segment capacity, capacity of each segment of a concatenated message)
    "GSM-7": (160, 153),
    "UCS-2": (70, 67),
}


@dataclass(frozen=True, slots=True)
class SegmentCount:
    """How an SMS body will be sent.

    `units` are septets (GSM-7) or UTF-16 code units (UCS-2); `per_segment` is the
    capacity that applies (160/70 for one segment, 153/67 when concatenated).
    An empty text needs no segment.
    """

    encoding: Encoding
    units: int
    segments: int
    per_segment: int


class TooManySegments(ValueError):
    """An SMS body longer than the number of segments allowed for it."""

    def __init__(self, count: SegmentCount, max_segments: int) -> None:
        super().__init__(
            f"message needs {count.segments} SMS segments ({count.encoding}, {count.units} units,"
            f" {count.per_segment} per segment) but at most {max_segments} are allowed"
        )
        self.count = count
        self.max_segments = max_segments


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM-7 default alphabet or its extension table."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def count_segments(text: str) -> SegmentCount:
    """Count the encoding, units and segments an SMS carrying `text` takes."""
    if is_gsm7(text):
        encoding: Encoding = "GSM-7"
        widths = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding = "UCS-2"
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
    units = sum(widths)
    single, concatenated = _LIMITS[encoding]
    if units <= single:
        return SegmentCount(encoding, units, 1 if units else 0, single)
    return SegmentCount(encoding, units, _pack(widths, concatenated), concatenated)


def check_segments(text: str, max_segments: int) -> SegmentCount:
    """Count `text`'s segments, raising TooManySegments when it needs more than `max_segments`."""
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, got {max_segments}")
    count = count_segments(text)
    if count.segments > max_segments:
        raise TooManySegments(count, max_segments)
    return count


def _pack(widths: list[int], capacity: int) -> int:
    """Segments needed when characters of the given widths fill segments in order, none split."""
    segments, used = 1, 0
    for width in widths:
        if used + width > capacity:
            segments, used = segments + 1, 0
        used += width
    return segments
