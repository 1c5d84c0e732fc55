"""Recipient addresses: phone numbers as E.164 (Brazil's mobile ninth digit included) and e-mail.

One person must map to one address however it was typed or whichever provider
reported it, or the inbox grows duplicate contacts. For Brazil that means a
mobile written in the pre-2016 8-digit form (still what Meta's WhatsApp `wa_id`
carries for many numbers) must come out with its ninth digit.
"""

from __future__ import annotations

import re
from typing import Final, Literal, NewType

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

from connectors.whatsapp_cloud.users import is_bsuid

# A normalized phone number. Only normalize_phone makes one; a provider's id
# (connectors.base.ProviderId: Meta's phone_number_id, a Twilio SID) is a different
# type, so handing an id where an address is expected shows up in review and typing.
E164 = NewType("E164", str)

Channel = Literal["sms", "whatsapp", "email"]
CHANNELS: Final[tuple[Channel, ...]] = ("sms", "whatsapp", "email")


class InvalidAddress(ValueError):
    """An address that cannot receive messages on its channel."""


_BRAZIL: Final = 55
# FIXED_LINE_OR_MOBILE is what phonenumbers answers for plans that do not tell
# the two apart (US, Canada); such numbers may well be mobiles.
_MOBILE_TYPES: Final = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# Twilio addresses WhatsApp recipients as "whatsapp:+55…"; links carry "tel:".
_ADDRESS_PREFIXES: Final = ("whatsapp:", "tel:", "sms:")
# What people put between digits; anything else makes a bare string "not just digits".
_DIGIT_SEPARATORS: Final = re.compile(r"[\s().\-/]+")

_NOT_POSSIBLE_REASONS: Final = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    # A number without its area code only rings inside that area; a message cannot reach it.
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "missing the area code (DDD in Brazil)",
}
_LOCAL_ONLY: Final = ValidationResult.IS_POSSIBLE_LOCAL_ONLY


def normalize_phone(raw: str, *, default_region: str = "BR") -> E164:
    """Return `raw` as E.164 (`+5511987654321`), or raise InvalidAddress saying why not.

    Accepts national and international spellings, `whatsapp:`/`tel:` prefixes, and
    WhatsApp ids (international digits without `+`). A Brazilian mobile without its
    ninth digit gains it; landlines never do.
    """
    if default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {default_region!r}")
    text = _strip_address_prefix(raw.strip())
    if not any(char.isdigit() for char in text):
        raise InvalidAddress(f"{raw!r} is not a phone number: it has no digits")

    parsed: list[PhoneNumber] = []
    parse_error: NumberParseException | None = None
    for candidate in _spellings(text, default_region):
        try:
            number = phonenumbers.parse(candidate, default_region)
        except NumberParseException as exc:
            parse_error = parse_error or exc
            continue
        if number.extension:
            raise InvalidAddress(f"{raw!r} has an extension; an extension cannot receive messages")
        number = _with_brazilian_ninth_digit(number)
        if phonenumbers.is_valid_number(number):
            return E164(phonenumbers.format_number(number, PhoneNumberFormat.E164))
        parsed.append(number)

    if not parsed:
        detail = parse_error.args[0] if parse_error and parse_error.args else "unreadable"
        raise InvalidAddress(f"{raw!r} is not a phone number: {detail}")
    # Explain with the primary reading (the default region's), which is what the user meant
    # unless the string was a WhatsApp id, and then that reading was valid above.
    number = parsed[0]
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        detail = _NOT_POSSIBLE_REASONS.get(reason, "not a possible length")
        raise InvalidAddress(f"{raw!r} is not a possible phone number: {detail}")
    if _is_local_only(number):
        raise InvalidAddress(f"{raw!r} is not a valid phone number: {_NOT_POSSIBLE_REASONS[_LOCAL_ONLY]}")
    region = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
    raise InvalidAddress(f"{raw!r} is not a valid phone number: no such number in the {region} numbering plan")


def normalize_email(raw: str) -> str:
    """Return `raw` as `local@domain` with the domain lower-cased (IDNA-encoded), or raise InvalidAddress.

    A deliberately plain check (dot-atom local part, DNS host name domain): it
    catches typos and junk, not every address RFC 5322 allows. Quoted local
    parts, IP-literal domains and non-ASCII local parts are refused.
    """
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    if not text:
        raise InvalidAddress("e-mail address is empty")
    if any(char.isspace() or ord(char) < 0x20 for char in text):
        raise InvalidAddress(f"{raw!r} is not an e-mail address: it contains spaces or control characters")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"{raw!r} is not an e-mail address: expected name@domain")
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise InvalidAddress(f"{raw!r} is not an e-mail address: invalid characters before the @")
    domain = _ascii_domain(domain.lower(), raw)
    address = f"{local}@{domain}"
    if len(address) > 254:
        raise InvalidAddress(f"{raw!r} is not an e-mail address: longer than 254 characters")
    return address


def normalize_address(channel: Channel, raw: str, *, default_region: str = "BR") -> str:
    """Return the canonical address for `channel`: E.164 for sms/whatsapp, normalized e-mail for email."""
    if channel == "whatsapp" and is_bsuid(raw):
        return raw.strip()  # a WhatsApp user known by Meta's business-scoped id (no phone number)
    if channel in ("sms", "whatsapp"):
        return normalize_phone(raw, default_region=default_region)
    if channel == "email":
        return normalize_email(raw)
    raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")


# Numbers a message must never be sent to: each costs the sender (premium-rate, shared-
# cost: the "SMS pumping" fraud runs on them) or reaches no person (voicemail, pagers,
# universal access numbers of call centres).
_NOT_A_RECIPIENT: Final = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.UAN: "a universal access (call centre) number",
    PhoneNumberType.VOICEMAIL: "a voicemail access number",
    PhoneNumberType.PAGER: "a pager number",
}


def check_recipient_phone(e164: str) -> str:
    """``e164`` when a message may go to it; InvalidAddress for premium-rate and other
    special-service numbers, which no message of a tenant should ever reach."""
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind in _NOT_A_RECIPIENT:
        raise InvalidAddress(f"{e164} is {_NOT_A_RECIPIENT[kind]}; messages are not sent to such numbers")
    return e164


def recipient_address(channel: Channel, raw: str, *, default_region: str = "BR") -> str:
    """``normalize_address`` for someone a message goes to: special-service numbers refused."""
    address = normalize_address(channel, raw, default_region=default_region)
    if channel == "whatsapp" and is_bsuid(address):
        return address
    return check_recipient_phone(address) if channel in ("sms", "whatsapp") else address


def is_mobile(e164: str) -> bool:
    """Whether the number can be a mobile (True also where the plan does not distinguish, as in the US)."""
    number = phonenumbers.parse(normalize_phone(e164))
    return phonenumbers.number_type(number) in _MOBILE_TYPES


def whatsapp_id(e164: str) -> str:
    """The number as Meta's WhatsApp APIs write it: international digits, no `+`."""
    return normalize_phone(e164)[1:]


def _strip_address_prefix(text: str) -> str:
    lowered = text.lower()
    for prefix in _ADDRESS_PREFIXES:
        if lowered.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


def _spellings(text: str, default_region: str) -> list[str]:
    """The readings to try, best first: as written, then bare digits as international (a WhatsApp id)."""
    spellings = [text]
    digits = _DIGIT_SEPARATORS.sub("", text)
    # A leading 0 is a trunk or international dialling prefix, never the start of a country code.
    if digits.isascii() and digits.isdigit() and not digits.startswith("0"):
        spellings.append("+" + digits)
    return spellings


def _is_local_only(number: PhoneNumber) -> bool:
    """Whether the digits are a local mobile or landline number dialled without its area code."""
    return any(
        phonenumbers.is_possible_number_for_type_with_reason(number, kind) == _LOCAL_ONLY
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE)
    )


def _with_brazilian_ninth_digit(number: PhoneNumber) -> PhoneNumber:
    """Insert the ninth digit into a Brazilian mobile written in the old 8-digit form.

    After the 2-digit area code, 8 subscriber digits starting 6-9 are a mobile
    from before the ninth digit (Anatel's rollout ended in 2016); starting 2-5
    they are a landline and stay as they are. phonenumbers itself still accepts
    the old 7xxx-xxxx radio range as a mobile, so without this the two spellings
    of one phone would count as two contacts. The result must be a valid mobile
    in phonenumbers' metadata, else the number is returned untouched and its
    validity judged as written.
    """
    if number.country_code != _BRAZIL or number.italian_leading_zero:
        # a leading zero is a dialling prefix misread as part of the number, never an area code
        return number
    national = phonenumbers.national_significant_number(number)
    if len(national) != 10 or national[2] not in "6789":
        return number
    candidate = PhoneNumber(country_code=_BRAZIL, national_number=int(f"{national[:2]}9{national[2:]}"))
    if phonenumbers.is_valid_number(candidate) and phonenumbers.number_type(candidate) == PhoneNumberType.MOBILE:
        return candidate
    return number


# RFC 5322 atext, dot-separated, no leading/trailing/double dots.
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART: Final = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_DOMAIN_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _ascii_domain(domain: str, raw: str) -> str:
    if not domain.isascii():
        try:
            # Stdlib IDNA 2003: good enough to turn "exemplo.com.br"-style unicode hosts into xn-- labels.
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidAddress(f"{raw!r} is not an e-mail address: invalid domain") from exc
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidAddress(f"{raw!r} is not an e-mail address: {domain!r} is not a valid domain")
    return domain
