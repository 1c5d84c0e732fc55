"""SMS segment counting, checked against an independent encoder-based reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.messaging.segments import SegmentCount, TooManySegments, check_segments, count_segments

# 3GPP TS 23.038 default alphabet by code position (0x1B is the escape, not a character).
GSM_DEFAULT_ALPHABET = (
    "@", "£", "$", "¥", "è", "é", "ù", "ì", "ò", "Ç", "\n", "Ø", "ø", "\r", "Å", "å",
    "\N{GREEK CAPITAL LETTER DELTA}", "_", "\N{GREEK CAPITAL LETTER PHI}", "\N{GREEK CAPITAL LETTER GAMMA}",
    "\N{GREEK CAPITAL LETTER LAMDA}", "\N{GREEK CAPITAL LETTER OMEGA}", "\N{GREEK CAPITAL LETTER PI}",
    "\N{GREEK CAPITAL LETTER PSI}", "\N{GREEK CAPITAL LETTER SIGMA}", "\N{GREEK CAPITAL LETTER THETA}",
    "\N{GREEK CAPITAL LETTER XI}", None, "Æ", "æ", "ß", "É",
    " ", "!", '"', "#", "¤", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?",
    "¡", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O",
    "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "Ä", "Ö", "Ñ", "Ü", "§",
    "¿", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o",
    "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "ä", "ö", "ñ", "ü", "à",
)  # fmt: skip
GSM_EXTENSION_TABLE = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}  # fmt: skip
ESCAPE = 0x1B
GSM_CODES = {char: code for code, char in enumerate(GSM_DEFAULT_ALPHABET) if char is not None}
GSM_CHARS = sorted(GSM_CODES.keys() | GSM_EXTENSION_TABLE.keys())


def reference_count(text: str) -> tuple[str, int, int]:
    """Encode as a carrier would and cut into PDUs, never ending one on an ESC or a lead surrogate."""
    if all(char in GSM_CODES or char in GSM_EXTENSION_TABLE for char in text):
        encoding, single, multi = "GSM-7", 160, 153
        units: list[int] = []
        for char in text:
            units += [ESCAPE, GSM_EXTENSION_TABLE[char]] if char in GSM_EXTENSION_TABLE else [GSM_CODES[char]]

        def splits_after(unit: int) -> bool:
            return unit == ESCAPE
    else:
        encoding, single, multi = "UCS-2", 70, 67
        raw = text.encode("utf-16-be")
        units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]

        def splits_after(unit: int) -> bool:
            return 0xD800 <= unit <= 0xDBFF

    if len(units) <= single:
        return encoding, len(units), 1 if units else 0
    segments, start = 0, 0
    while start < len(units):
        end = min(start + multi, len(units))
        if end < len(units) and splits_after(units[end - 1]):
            end -= 1
        segments, start = segments + 1, end
    return encoding, len(units), segments


gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=500)
# Portuguese letters outside GSM-7, symbols, and emoji (outside the BMP: two UTF-16 units).
non_gsm_chars = st.sampled_from(
    list("çãõáâêíóôúÁÍÓÚ“”–…") + ["😀", "📦", "\N{EMOJI MODIFIER FITZPATRICK TYPE-4}", "\u00a0"]
)
mixed_text = st.text(
    alphabet=st.one_of(st.sampled_from(GSM_CHARS), non_gsm_chars, st.characters(codec="utf-8")),
    max_size=400,
)


# A wide character (escape pair, surrogate pair) right around a segment boundary.
near_a_boundary = st.builds(
    lambda filler, length, wide, rest: filler * length + wide + rest,
    st.sampled_from(["a", "ã"]),
    st.one_of(st.integers(60, 72), st.integers(128, 140), st.integers(145, 162), st.integers(300, 310)),
    st.sampled_from(["€", "{", "😀", "📦"]),
    st.one_of(gsm_text, mixed_text),
)


class TestAgainstReference:
    @settings(max_examples=200, deadline=None)
    @given(st.one_of(gsm_text, mixed_text, near_a_boundary))
    def test_matches_reference(self, text: str) -> None:
        count = count_segments(text)
        assert (count.encoding, count.units, count.segments) == reference_count(text)

    def test_reference_alphabet_is_the_full_table(self) -> None:
        assert len(GSM_CODES) == 127 and len(GSM_EXTENSION_TABLE) == 10


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(gsm_text, non_gsm_chars, st.data())
    def test_ucs2_whenever_a_non_gsm_character_is_present(self, text: str, char: str, data: st.DataObject) -> None:
        assert count_segments(text).encoding == "GSM-7"
        position = data.draw(st.integers(min_value=0, max_value=len(text)))
        assert count_segments(text[:position] + char + text[position:]).encoding == "UCS-2"

    @settings(max_examples=200, deadline=None)
    @given(mixed_text, st.data())
    def test_segments_never_decrease_as_text_grows(self, text: str, data: st.DataObject) -> None:
        cut = data.draw(st.integers(min_value=0, max_value=len(text)))
        assert count_segments(text[:cut]).segments <= count_segments(text).segments

    @settings(max_examples=200, deadline=None)
    @given(mixed_text)
    def test_segments_hold_the_units(self, text: str) -> None:
        count = count_segments(text)
        assert count.segments * count.per_segment >= count.units
        single, concatenated = (160, 153) if count.encoding == "GSM-7" else (70, 67)
        assert (count.segments <= 1) == (count.units <= single)
        assert count.per_segment == (single if count.segments <= 1 else concatenated)


class TestBoundaries:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", SegmentCount("GSM-7", 0, 0, 160)),
            ("a" * 160, SegmentCount("GSM-7", 160, 1, 160)),
            ("a" * 161, SegmentCount("GSM-7", 161, 2, 153)),
            ("a" * 306, SegmentCount("GSM-7", 306, 2, 153)),
            ("a" * 307, SegmentCount("GSM-7", 307, 3, 153)),
            ("€" * 80, SegmentCount("GSM-7", 160, 1, 160)),
            ("€" * 81, SegmentCount("GSM-7", 162, 2, 153)),
            ("ã" * 70, SegmentCount("UCS-2", 70, 1, 70)),
            ("ã" * 71, SegmentCount("UCS-2", 71, 2, 67)),
            ("ã" * 134, SegmentCount("UCS-2", 134, 2, 67)),
            ("ã" * 135, SegmentCount("UCS-2", 135, 3, 67)),
            ("😀" * 35, SegmentCount("UCS-2", 70, 1, 70)),
            ("Ç" * 160, SegmentCount("GSM-7", 160, 1, 160)),  # capital Ç is GSM-7...
            ("ç" + "a" * 69, SegmentCount("UCS-2", 70, 1, 70)),  # ...small ç is not
        ],
    )
    def test_limits(self, text: str, expected: SegmentCount) -> None:
        assert count_segments(text) == expected

    def test_extension_character_is_not_split_across_segments(self) -> None:
        # 152 + 2 + 152 = 306 septets: plain division says 2, but "€" cannot straddle the boundary.
        assert count_segments("a" * 152 + "€" + "a" * 152).segments == 3

    def test_surrogate_pair_is_not_split_across_segments(self) -> None:
        # 66 + 2 + 66 = 134 units: plain division says 2, but the emoji moves whole to segment 2.
        assert count_segments("ã" * 66 + "😀" + "ã" * 66).segments == 3


class TestCheckSegments:
    def test_within_limit_returns_the_count(self) -> None:
        assert check_segments("Olá!", 1) == SegmentCount("UCS-2", 4, 1, 70)

    def test_over_limit_says_by_how_much(self) -> None:
        with pytest.raises(TooManySegments, match=r"needs 3 SMS segments \(UCS-2, 135 units.*at most 2") as caught:
            check_segments("ã" * 135, 2)
        assert caught.value.count.segments == 3
        assert caught.value.max_segments == 2
        assert isinstance(caught.value, ValueError)

    def test_limit_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            check_segments("oi", 0)
