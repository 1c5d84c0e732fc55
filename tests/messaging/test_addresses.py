"""Phone and e-mail normalization: one person, one address, however it was written."""

from __future__ import annotations

import contextlib

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from hub.messaging.addresses import (
    InvalidAddress,
    check_recipient_phone,
    is_mobile,
    normalize_address,
    normalize_email,
    normalize_phone,
    recipient_address,
    whatsapp_id,
)

# Anatel's area codes (DDD), written out here rather than taken from phonenumbers,
# so the tests check the library's metadata instead of echoing it.
BRAZILIAN_AREA_CODES = [
    *range(11, 20), 21, 22, 24, 27, 28, 31, 32, 33, 34, 35, 37, 38, *range(41, 50),
    51, 53, 54, 55, *range(61, 70), 71, 73, 74, 75, 77, 79, *range(81, 90), *range(91, 100),
]  # fmt: skip

area_codes = st.sampled_from(BRAZILIAN_AREA_CODES).map(str)
seven_digits = st.text(alphabet="0123456789", min_size=7, max_size=7)
# 8-digit subscriber numbers: 6-9 first is a mobile from before the ninth digit, 2-5 a landline.
old_mobile_subscribers = st.tuples(st.sampled_from("6789"), seven_digits).map("".join)
landline_subscribers = st.tuples(st.sampled_from("2345"), seven_digits).map("".join)


def mobile_spellings(ddd: str, subscriber: str) -> list[str]:
    """Ways people, Twilio and Meta write one Brazilian mobile, with and without its ninth digit."""
    full = "9" + subscriber
    return [
        f"+55 {ddd} {full[:5]}-{full[5:]}",
        f"+55 ({ddd}) {full[:5]}-{full[5:]}",
        f"({ddd}) {full[:5]}-{full[5:]}",
        f"{ddd} {full}",
        f"0{ddd}{full}",
        f"0xx{ddd} {full[:5]} {full[5:]}",
        f"0 21 {ddd} {full}",  # long-distance carrier selection code
        f"+55{ddd}{full}",
        f"whatsapp:+55{ddd}{full}",
        f"55{ddd}{full}",  # WhatsApp id
        # Without the ninth digit:
        f"+55 {ddd} {subscriber[:4]}-{subscriber[4:]}",
        f"({ddd}) {subscriber[:4]}-{subscriber[4:]}",
        f"0{ddd}{subscriber}",
        f"whatsapp:+55{ddd}{subscriber}",
        f"55{ddd}{subscriber}",  # WhatsApp id as Meta still sends it for many numbers
    ]


def landline_spellings(ddd: str, subscriber: str) -> list[str]:
    return [
        f"+55 {ddd} {subscriber[:4]}-{subscriber[4:]}",
        f"({ddd}) {subscriber[:4]}-{subscriber[4:]}",
        f"0{ddd}{subscriber}",
        f"+55{ddd}{subscriber}",
        f"55{ddd}{subscriber}",
        f"tel:+55-{ddd}-{subscriber}",
    ]


class TestBrazilianMobiles:
    @settings(max_examples=200, deadline=None)
    @given(ddd=area_codes, subscriber=old_mobile_subscribers)
    def test_every_spelling_with_or_without_ninth_digit_is_one_e164(self, ddd: str, subscriber: str) -> None:
        expected = f"+55{ddd}9{subscriber}"
        assert {normalize_phone(raw) for raw in mobile_spellings(ddd, subscriber)} == {expected}

    @settings(max_examples=100, deadline=None)
    @given(ddd=area_codes, subscriber=old_mobile_subscribers)
    def test_result_is_a_valid_mobile_in_phonenumbers_metadata(self, ddd: str, subscriber: str) -> None:
        e164 = normalize_phone(f"55{ddd}{subscriber}")
        number = phonenumbers.parse(e164)
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.number_type(number) == PhoneNumberType.MOBILE
        assert is_mobile(e164)
        assert whatsapp_id(e164) == f"55{ddd}9{subscriber}"

    def test_examples(self) -> None:
        assert normalize_phone("+55 11 98765-4321") == "+5511987654321"
        assert normalize_phone("(11) 98765-4321") == "+5511987654321"
        assert normalize_phone("011987654321") == "+5511987654321"
        assert normalize_phone("whatsapp:+5511987654321") == "+5511987654321"
        assert normalize_phone("5511987654321") == "+5511987654321"
        assert normalize_phone("551187654321") == "+5511987654321"
        assert normalize_phone("+55 11 8765-4321") == "+5511987654321"
        # phonenumbers still calls the old 7xxx-xxxx radio range valid as is; it gains the 9 all the same.
        assert normalize_phone("+55 21 7765-4321") == "+5521977654321"

    def test_whatsapp_id_of_an_old_wa_id_has_the_ninth_digit(self) -> None:
        assert whatsapp_id("551187654321") == "5511987654321"
        assert whatsapp_id("+5511987654321") == "5511987654321"


class TestBrazilianLandlines:
    @settings(max_examples=200, deadline=None)
    @given(ddd=area_codes, subscriber=landline_subscribers)
    def test_landlines_never_gain_a_ninth_digit(self, ddd: str, subscriber: str) -> None:
        expected = f"+55{ddd}{subscriber}"
        assert {normalize_phone(raw) for raw in landline_spellings(ddd, subscriber)} == {expected}
        assert not is_mobile(expected)

    def test_toll_free_is_left_alone(self) -> None:
        assert normalize_phone("0800 123 4567") == "+558001234567"


class TestRoundTrip:
    @settings(max_examples=200, deadline=None)
    @given(
        ddd=area_codes,
        subscriber=st.one_of(
            old_mobile_subscribers.map(lambda digits: "9" + digits),
            landline_subscribers,
        ),
    )
    def test_brazilian_e164_maps_to_itself(self, ddd: str, subscriber: str) -> None:
        e164 = f"+55{ddd}{subscriber}"
        assert normalize_phone(e164) == e164

    def test_example_numbers_of_every_region_map_to_themselves(self) -> None:
        """phonenumbers' own example mobile and fixed-line numbers, international and national spellings."""
        checked = 0
        for region in sorted(phonenumbers.SUPPORTED_REGIONS):
            for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
                example = phonenumbers.example_number_for_type(region, kind)
                if example is None or not phonenumbers.is_valid_number(example):
                    continue
                e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
                national = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
                assert normalize_phone(e164) == e164, region
                assert normalize_phone(national, default_region=region) == e164, region
                checked += 1
        assert checked > 400

    @settings(max_examples=200, deadline=None)
    @given(
        st.tuples(
            st.sampled_from(["", "+", "whatsapp:+", "00"]),
            st.text(alphabet="0123456789 ()-.", min_size=1, max_size=20),
        ).map("".join)
    )
    def test_anything_accepted_is_valid_e164_and_stable(self, raw: str) -> None:
        try:
            e164 = normalize_phone(raw)
        except InvalidAddress:
            return
        assert e164.startswith("+") and e164[1:].isdigit()
        assert phonenumbers.is_valid_number(phonenumbers.parse(e164))
        assert normalize_phone(e164) == e164

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=30))
    def test_garbage_raises_only_invalid_address(self, raw: str) -> None:
        with contextlib.suppress(InvalidAddress):
            normalize_phone(raw)


class TestOtherCountries:
    def test_whatsapp_id_of_a_foreign_number_is_read_as_international(self) -> None:
        assert normalize_phone("16502530000") == "+16502530000"
        assert normalize_phone("351912345678") == "+351912345678"

    def test_foreign_numbers_are_untouched_by_the_brazilian_rule(self) -> None:
        assert normalize_phone("+1 650 253 0000") == "+16502530000"
        assert normalize_phone("650 253 0000", default_region="US") == "+16502530000"
        assert is_mobile("+16502530000")  # the US plan does not say; it may be a mobile


class TestInvalidPhones:
    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("", "no digits"),
            ("call me", "no digits"),
            ("+999 123", "not a phone number"),
            ("+55 11 1234", "not a possible phone number: too short"),
            ("+55 11 98765-43210000", "not a possible phone number: too long"),
            ("+55 20 98765-4321", "not a valid phone number"),  # 20 is no area code
            ("98765-4321", "missing the area code"),
            ("3456-7890", "missing the area code"),
            ("+55 11 98765-4321 ext. 12", "extension"),
            # a dialling prefix read as a leading zero: refused, not made into another number
            ("0047328)7480", "not a valid phone number"),
        ],
    )
    def test_says_why(self, raw: str, reason: str) -> None:
        with pytest.raises(InvalidAddress, match=reason):
            normalize_phone(raw)

    def test_invalid_address_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            normalize_phone("nope")

    def test_unknown_default_region_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="unknown default region") as caught:
            normalize_phone("11987654321", default_region="XX")
        assert not isinstance(caught.value, InvalidAddress)


class TestEmail:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Joao.Silva@Exemplo.COM.br", "Joao.Silva@exemplo.com.br"),
            ("  maria+pedidos@exemplo.com  ", "maria+pedidos@exemplo.com"),
            ("mailto:contato@loja.com.br", "contato@loja.com.br"),
            ("x@ação.com.br", "x@xn--ao-siap.com.br"),
            ("o'neil@example.org", "o'neil@example.org"),
        ],
    )
    def test_normalizes(self, raw: str, expected: str) -> None:
        assert normalize_email(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("", "empty"),
            ("maria", "expected name@domain"),
            ("maria@", "expected name@domain"),
            ("@exemplo.com", "expected name@domain"),
            ("ma ria@exemplo.com", "spaces"),
            ("maria@exemplo", "not a valid domain"),
            ("maria@-exemplo.com", "not a valid domain"),
            ("maria@exemplo..com", "not a valid domain"),
            ("maria@1.2.3.4", "not a valid domain"),
            ("ma..ria@exemplo.com", "before the @"),
            (".maria@exemplo.com", "before the @"),
            ("joão@exemplo.com", "before the @"),
            ('"quoted"@exemplo.com', "before the @"),
            ("a@b@exemplo.com", "before the @"),
            ("x" * 65 + "@exemplo.com", "before the @"),
        ],
    )
    def test_refuses(self, raw: str, reason: str) -> None:
        with pytest.raises(InvalidAddress, match=reason):
            normalize_email(raw)


class TestNormalizeAddress:
    def test_dispatches_by_channel(self) -> None:
        assert normalize_address("sms", "(11) 8765-4321") == "+5511987654321"
        assert normalize_address("whatsapp", "551187654321") == "+5511987654321"
        assert normalize_address("email", "Maria@Exemplo.com") == "Maria@exemplo.com"

    def test_wrong_kind_of_address_for_the_channel(self) -> None:
        with pytest.raises(InvalidAddress):
            normalize_address("email", "+5511987654321")
        with pytest.raises(InvalidAddress):
            normalize_address("sms", "maria@exemplo.com")

    def test_unknown_channel(self) -> None:
        with pytest.raises(ValueError, match="unknown channel"):
            normalize_address("fax", "+5511987654321")  # type: ignore[arg-type]


class TestRecipients:
    @pytest.mark.parametrize(("number", "kind"), [
        ("+1 900 555 1234", "premium-rate"), ("+55 900 123 4567", "premium-rate"), ("+44 9067 123456", "premium-rate"),
        ("+33 899 12 34 56", "premium-rate"),
    ])
    def test_premium_rate_numbers_are_never_recipients(self, number, kind):
        with pytest.raises(InvalidAddress, match=kind):
            recipient_address("sms", number)
        with pytest.raises(InvalidAddress, match=kind):
            recipient_address("whatsapp", number)
        assert normalize_phone(number)  # still a phone number: an inbound sender may be one

    def test_every_special_service_type_phonenumbers_knows_is_refused(self):
        for kind in (PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST, PhoneNumberType.UAN,
                     PhoneNumberType.VOICEMAIL, PhoneNumberType.PAGER):
            for region in ("BR", "US", "GB", "FR", "DE", "PT", "AR"):
                example = phonenumbers.example_number_for_type(region, kind)
                if example is None or not phonenumbers.is_valid_number(example):
                    continue
                e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
                with pytest.raises(InvalidAddress):
                    check_recipient_phone(e164)

    def test_mobiles_landlines_and_e_mail_are_recipients(self):
        assert recipient_address("sms", "(11) 98765-4321") == "+5511987654321"
        assert recipient_address("whatsapp", "+55 11 3456-7890") == "+551134567890"
        assert recipient_address("email", "Ana@Example.COM") == "Ana@example.com"


def test_a_message_to_a_premium_rate_number_is_a_422_naming_to(client, runtime):
    from tests.support import tenant_headers

    _, headers = tenant_headers(client, runtime)
    r = client.post("/v1/messages", headers=headers, json={"channel": "sms", "to": "+19005551234", "body": "oi"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("to:"), r.text
    r = client.post("/v1/contacts", headers=headers, json={"name": "X", "phone": "+19005551234"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_phone"
