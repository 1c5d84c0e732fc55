"""Bring your own Twilio account: ``PUT /v1/integrations/twilio``, checked with Twilio
(the sandbox, through the real SDK) before anything is written."""

from __future__ import annotations

import pytest

from hub.webhooks.routes import resolve
from tenants.vault import mask_secret
from tests.onboarding.helpers import Onboarding, Tenant
from tests.support import random_hex


class Account:
    """A main account of the tenant's own at the sandbox Twilio, with its numbers."""

    def __init__(self, onboarding: Onboarding) -> None:
        self.sid = "AC" + random_hex(16)
        self.token = random_hex(16)
        onboarding.twilio.register_account(self.sid, self.token)
        self.numbers = onboarding.numbers(self.sid)
        assert len(self.numbers) >= 2

    def body(self, numbers: list[str] | None = None, token: str | None = None) -> dict:
        return {"credentials": {"account_sid": self.sid, "auth_token": token or self.token},
                "config": {"numbers": self.numbers[:1] if numbers is None else numbers, "channels": ["sms"]}}


@pytest.fixture
def account(onboarding: Onboarding) -> Account:
    return Account(onboarding)


def put(onboarding: Onboarding, tenant: Tenant, body: dict):
    return onboarding.http.put("/v1/integrations/twilio", json=body, headers=tenant.headers)


def route_owner(onboarding: Onboarding, key: str):
    with onboarding.runtime.session_factory() as session:
        target = resolve(onboarding.runtime, session, kind="twilio", route_keys=[key])
        return target.tenant_id if target else None


def national(e164: str) -> str:
    """+5511912345678 as a person types it: (11) 91234-5678."""
    digits = e164[3:]
    return f"({digits[:2]}) {digits[2:-4]}-{digits[-4:]}"


class TestOwnAccount:
    def test_valid_credentials_and_numbers_are_sealed_normalized_and_routed(self, onboarding, account):
        tenant = onboarding.tenant()
        answer = put(onboarding, tenant, account.body([national(n) for n in account.numbers[:2]]))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "active"
        assert body["config"] == {"numbers": account.numbers[:2], "channels": ["sms"], "provisioned": False}
        assert body["credentials"] == {"account_sid": account.sid,  # an account id is no secret
                                       "auth_token": mask_secret(account.token)}
        assert account.token not in answer.text
        for key in (*account.numbers[:2], account.sid):
            assert route_owner(onboarding, key) == tenant.id
        assert "integration.credentials_set" in onboarding.audit_actions(tenant)

        # a number no longer listed loses its route; the account keeps all its numbers
        fewer = put(onboarding, tenant, account.body(account.numbers[:1]))
        assert fewer.status_code == 200 and fewer.json()["config"]["numbers"] == account.numbers[:1]
        assert route_owner(onboarding, account.numbers[0]) == tenant.id
        assert route_owner(onboarding, account.numbers[1]) is None
        assert onboarding.numbers(account.sid) == account.numbers

    def test_a_refused_token_is_a_422_and_writes_nothing(self, onboarding, account):
        tenant = onboarding.tenant()
        answer = put(onboarding, tenant, account.body(token="not-the-token"))
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "credentials_refused" and "not-the-token" not in answer.text
        assert onboarding.integration(tenant).status_code == 404
        assert route_owner(onboarding, account.numbers[0]) is None

    def test_a_number_the_account_does_not_own_is_named_in_a_422(self, onboarding, account):
        tenant = onboarding.tenant()
        stranger = "+5511987650000"
        answer = put(onboarding, tenant, account.body([account.numbers[0], stranger]))
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["code"] == "numbers_not_owned" and stranger in error["message"]
        assert account.numbers[0] not in error["message"]
        assert onboarding.integration(tenant).status_code == 404

    def test_malformed_credentials_or_config_are_a_422_before_calling_twilio(self, onboarding):
        tenant = onboarding.tenant()
        sid, token, number = "AC" + "0" * 32, "t0k3n-secret", "+5511987650000"
        cases = [
            ({"account_sid": "not-a-sid", "auth_token": token}, {"numbers": [number]}, "invalid_credentials"),
            ({"account_sid": sid}, {"numbers": [number]}, "invalid_credentials"),
            ({"account_sid": sid, "auth_token": token, "pin": "1"}, {"numbers": [number]}, "invalid_credentials"),
            ({}, {"numbers": [number]}, "invalid_credentials"),
            ({"account_sid": sid, "auth_token": token}, {"numbers": ["12345"]}, "invalid_config"),
            ({"account_sid": sid, "auth_token": token}, {"numbers": "+5511987650000"}, "invalid_config"),
            ({"account_sid": sid, "auth_token": token}, {"numbers": []}, "invalid_config"),
            ({"account_sid": sid, "auth_token": token}, {"numbers": [number], "channels": ["fax"]}, "invalid_config"),
            ({"account_sid": sid, "auth_token": token}, {"numbers": [number], "provisioned": True}, "invalid_config"),
        ]
        for credentials, config, code in cases:
            answer = put(onboarding, tenant, {"credentials": credentials, "config": config})
            assert answer.status_code == 422, (credentials, config, answer.text)
            assert answer.json()["error"]["code"] == code, (credentials, config)
            assert token not in answer.text
        assert onboarding.twilio.account(sid) is None  # Twilio was never asked
        assert onboarding.integration(tenant).status_code == 404

    def test_a_number_claimed_by_two_tenants_is_a_409_for_the_second(self, onboarding, account):
        first, second = onboarding.tenant("first"), onboarding.tenant("second")
        assert put(onboarding, first, account.body()).status_code == 200
        taken = put(onboarding, second, account.body())
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "route_taken"
        assert onboarding.integration(second).status_code == 404  # nothing written
        assert route_owner(onboarding, account.numbers[0]) == first.id

    def test_a_provisioned_integration_is_not_replaced_by_an_own_account(self, onboarding, account):
        tenant = onboarding.tenant()
        assert onboarding.provision(tenant).status_code == 201
        refused = put(onboarding, tenant, account.body())
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "integration_provisioned"
        assert onboarding.integration(tenant).json()["config"]["provisioned"] is True

        other = onboarding.tenant("own")
        assert put(onboarding, other, account.body()).status_code == 200
        provision = onboarding.provision(other)
        assert provision.status_code == 409 and provision.json()["error"]["code"] == "integration_exists"
        assert onboarding.subaccounts(other) == []
