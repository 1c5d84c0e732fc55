"""The onboarding saga's Twilio steps through the real SDK, and bring-your-own accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from twilio.base.exceptions import TwilioRestException

from connectors.base import OutboundMessage, PermanentProviderError, TransientProviderError
from connectors.twilio import TwilioConnector
from tests.support import random_hex

if TYPE_CHECKING:
    from conftest import ConnectorFactory, MainAccount, Sandbox, WebhookReceiver


class TestSubaccountLifecycle:
    def test_create_find_buy_update_release_close(
        self, main_connector: TwilioConnector, connector_for: ConnectorFactory, sandbox: Sandbox
    ) -> None:
        main_sid = main_connector.credentials.account_sid
        sid, token = main_connector.create_subaccount("Clínica Sorriso — tenant 42")
        assert sid.startswith("AC") and sid != main_sid and len(token) == 32
        account = main_connector.fetch_subaccount(sid)
        assert (account.status, account.owner_account_sid, account.auth_token) == ("active", main_sid, token)
        # a retried saga finds the subaccount instead of creating another
        assert main_connector.find_subaccount("Clínica Sorriso — tenant 42") == (sid, token)
        assert main_connector.find_subaccount("nobody") is None

        offered = main_connector.find_available_numbers("BR", area_code="21", limit=3)
        assert len(offered) == 3 and all(n.startswith("+5521") for n in offered)
        number = offered[0]
        number_sid = main_connector.buy_number(
            number, sms_url="https://hub.example.com/webhooks/twilio", account_sid=sid
        )
        assert number_sid.startswith("PN")
        assert main_connector.find_number(number, account_sid=sid) == number_sid
        assert main_connector.find_number(number) is None  # it belongs to the subaccount
        assert number not in main_connector.find_available_numbers("BR", area_code="21", limit=3)

        main_connector.update_number_webhooks(
            number_sid, sms_url="https://hub.example.com/v2/twilio", status_callback="https://s", account_sid=sid
        )
        [stored] = sandbox.state.numbers(account_sid=sid)
        assert (stored["sms_url"], stored["sms_method"], stored["status_callback"]) == (
            "https://hub.example.com/v2/twilio",
            "POST",
            "https://s",
        )

        # the subaccount's own credentials see exactly its number
        tenant = connector_for(sid, token, numbers=[number])
        assert tenant.list_numbers() == [(number_sid, number)]
        assert tenant.validate_connection([number]) == []
        assert tenant.check().ok

        assert main_connector.release_number(number_sid, account_sid=sid) is True
        assert main_connector.release_number(number_sid, account_sid=sid) is False  # compensation may repeat
        assert main_connector.list_numbers(account_sid=sid) == []

        main_connector.close_subaccount(sid)
        main_connector.close_subaccount(sid)  # idempotent
        assert main_connector.fetch_subaccount(sid).status == "closed"
        # a closed account's credentials are dead
        health = tenant.check()
        assert not health.ok and "20003" in health.detail
        with pytest.raises(PermanentProviderError):
            tenant.send(OutboundMessage(channel="sms", to="+5521987654321", body="x"))

    def test_closed_subaccount_cannot_be_reopened(self, main_connector: TwilioConnector) -> None:
        sid, _ = main_connector.create_subaccount("to close")
        main_connector.close_subaccount(sid)
        with pytest.raises(TwilioRestException) as caught:
            main_connector.client().api.v2010.accounts(sid).update(status="active")
        assert (caught.value.status, caught.value.code) == (400, 21479)

    def test_closing_releases_numbers(self, main_connector: TwilioConnector, sandbox: Sandbox) -> None:
        sid, _ = main_connector.create_subaccount("closing")
        [number] = main_connector.find_available_numbers("BR", "11", limit=1)
        main_connector.buy_number(number, sms_url="https://h/w", account_sid=sid)
        main_connector.close_subaccount(sid)
        assert sandbox.state.numbers(account_sid=sid) == []
        assert number in main_connector.find_available_numbers("BR", "11", limit=1)
        # and the owner may still read the account, but not act on it
        assert main_connector.fetch_subaccount(sid).status == "closed"
        with pytest.raises(PermanentProviderError) as caught:
            main_connector.list_numbers(account_sid=sid)
        assert (caught.value.status, caught.value.code) == (403, "20005")

    def test_mobile_numbers_and_area_code(self, main_connector: TwilioConnector) -> None:
        mobiles = main_connector.find_available_numbers("br", area_code="85", limit=2, number_type="mobile")
        assert [n[:6] for n in mobiles] == ["+55859", "+55859"]
        assert len(mobiles[0]) == len("+5585970000001")  # 11-digit national: the mobile 9th digit
        assert main_connector.find_available_numbers("BR", area_code="00") == []

    def test_unknown_country_is_a_permanent_404(self, main_connector: TwilioConnector) -> None:
        with pytest.raises(PermanentProviderError) as caught:
            main_connector.find_available_numbers("ZZ")
        assert (caught.value.status, caught.value.code) == (404, "20404")


class TestIdempotentPurchase:
    def test_double_purchase_is_refused_and_the_number_found(self, main_connector: TwilioConnector) -> None:
        sid, _ = main_connector.create_subaccount("retry me")
        [number] = main_connector.find_available_numbers("BR", "11", limit=1)
        bought = main_connector.buy_number(number, sms_url="https://h/w", account_sid=sid)
        with pytest.raises(PermanentProviderError) as caught:
            main_connector.buy_number(number, sms_url="https://h/w", account_sid=sid)
        assert (caught.value.code, caught.value.status) == ("21422", 400)
        # what a retried saga does instead of buying again
        assert main_connector.find_number(number, account_sid=sid) == bought

    def test_another_account_cannot_buy_it_either(
        self, main_connector: TwilioConnector, connector_for: ConnectorFactory
    ) -> None:
        [number] = main_connector.find_available_numbers("BR", "11", limit=1)
        main_connector.buy_number(number, sms_url="https://h/w")
        stranger = connector_for("AC" + random_hex(16), random_hex(16))
        with pytest.raises(PermanentProviderError) as caught:
            stranger.buy_number(number, sms_url="https://h/w")
        assert caught.value.code == "21422"

    def test_failed_purchase_leaves_nothing_behind(
        self, main_connector: TwilioConnector, sandbox: Sandbox
    ) -> None:
        sid, _ = main_connector.create_subaccount("flaky")
        [number] = main_connector.find_available_numbers("BR", "11", limit=1)
        sandbox.state.inject_failure("http_500", resource="numbers", number=number, times=1)
        with pytest.raises(TransientProviderError):
            main_connector.buy_number(number, sms_url="https://h/w", account_sid=sid)
        assert main_connector.find_number(number, account_sid=sid) is None
        assert main_connector.buy_number(number, sms_url="https://h/w", account_sid=sid).startswith("PN")


class TestOtherAccounts:
    def test_subaccount_of_someone_else_is_not_found(
        self, main_connector: TwilioConnector, connector_for: ConnectorFactory
    ) -> None:
        sid, _ = main_connector.create_subaccount("mine")
        stranger = connector_for("AC" + random_hex(16), random_hex(16))
        with pytest.raises(PermanentProviderError) as caught:
            stranger.list_numbers(account_sid=sid)
        assert caught.value.status == 404

    def test_subaccount_cannot_create_subaccounts(
        self, main_connector: TwilioConnector, connector_for: ConnectorFactory
    ) -> None:
        sid, token = main_connector.create_subaccount("sub")
        with pytest.raises(PermanentProviderError) as caught:
            connector_for(sid, token).create_subaccount("grandchild")
        assert caught.value.status == 403


class TestBringYourOwnAccount:
    def test_any_well_formed_account_works_and_owns_stable_numbers(
        self, main_connector: TwilioConnector, main_account: MainAccount, sandbox: Sandbox
    ) -> None:
        health = main_connector.check()
        assert health.ok, health.detail
        assert main_account.sid not in health.detail  # the SID is masked
        owned = main_connector.list_numbers()
        assert len(owned) == 3 and all(e164.startswith("+55") for _, e164 in owned)
        # derived from the SID: the same account finds the same numbers after a reset
        sandbox.state.reset()
        assert main_connector.list_numbers() == owned

    def test_validate_connection_reports_numbers_it_lacks(
        self, main_connector: TwilioConnector, connector_for: ConnectorFactory
    ) -> None:
        numbers = [e164 for _, e164 in main_connector.list_numbers()]
        assert main_connector.validate_connection(numbers) == []
        assert main_connector.validate_connection([numbers[0], "+5511912345678"]) == ["+5511912345678"]

    def test_wrong_token_is_refused(
        self, main_connector: TwilioConnector, main_account: MainAccount, connector_for: ConnectorFactory
    ) -> None:
        assert main_connector.check().ok  # the first token seen is the account's
        impostor = connector_for(main_account.sid, random_hex(16))
        health = impostor.check()
        assert not health.ok and "20003" in health.detail
        with pytest.raises(PermanentProviderError) as caught:
            impostor.validate_connection([])
        assert (caught.value.status, caught.value.code) == (401, "20003")

    def test_sends_from_its_own_number(
        self,
        main_connector: TwilioConnector,
        connector_for: ConnectorFactory,
        main_account: MainAccount,
        receiver: WebhookReceiver,
    ) -> None:
        [(_, own)] = main_connector.list_numbers()[:1]
        byo = connector_for(main_account.sid, main_account.token, numbers=[own])
        message = OutboundMessage(channel="sms", to="+5521987654321", body="oi", status_callback=receiver.url("/s"))
        result = byo.send(message)
        # each status of the message calls back; the first may not be alone when seen
        hits = receiver.wait_for(1, where=lambda r: r.form.get("MessageSid") == result.provider_message_id)
        assert all(TwilioConnector.verify(hit, main_account.token) for hit in hits)


class TestPaging:
    def test_sdk_follows_next_page_through_the_redirect(self, main_connector: TwilioConnector) -> None:
        sid, _ = main_connector.create_subaccount("many numbers")
        offered = main_connector.find_available_numbers("BR", "41", limit=5)
        for number in offered:
            main_connector.buy_number(number, sms_url="https://h/w", account_sid=sid)
        pages = main_connector.client(sid).api.v2010.account.incoming_phone_numbers.list(page_size=2)
        assert sorted(n.phone_number for n in pages) == sorted(offered)
