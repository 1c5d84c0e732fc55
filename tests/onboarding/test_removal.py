"""``DELETE /v1/integrations/twilio``: what the hub bought is released, what the tenant
brought is left alone, and a Twilio failure never silently orphans a paid number."""

from __future__ import annotations

from hub.webhooks.routes import resolve
from tests.onboarding.helpers import Onboarding
from tests.support import random_hex


def delete(onboarding: Onboarding, tenant):
    return onboarding.http.delete("/v1/integrations/twilio", headers=tenant.headers)


def routed(onboarding: Onboarding, key: str) -> bool:
    with onboarding.runtime.session_factory() as session:
        return resolve(onboarding.runtime, session, kind="twilio", route_keys=[key]) is not None


class TestRemoval:
    def test_a_provisioned_integration_releases_its_number_and_closes_its_subaccount(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        config = onboarding.provision(tenant).json()["config"]
        [number], sub = config["numbers"], config["subaccount_sid"]
        answer = delete(onboarding, tenant)
        assert answer.status_code == 204, answer.text
        assert onboarding.twilio.account(sub)["status"] == "closed"
        assert onboarding.numbers(sub) == []
        assert onboarding.integration(tenant).status_code == 404
        assert not routed(onboarding, number) and not routed(onboarding, sub)
        actions = onboarding.audit_actions(tenant)
        assert actions[-2:] == ["integration.deprovisioned", "integration.deleted"]
        # the tenant can be onboarded again afterwards
        assert onboarding.provision(tenant).status_code == 201

    def test_an_own_account_only_loses_its_routes(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        sid, token = "AC" + random_hex(16), random_hex(16)
        onboarding.twilio.register_account(sid, token)
        numbers = onboarding.numbers(sid)
        body = {"credentials": {"account_sid": sid, "auth_token": token}, "config": {"numbers": numbers}}
        assert onboarding.http.put("/v1/integrations/twilio", json=body, headers=tenant.headers).status_code == 200
        assert delete(onboarding, tenant).status_code == 204
        assert onboarding.twilio.account(sid)["status"] == "active"
        assert onboarding.numbers(sid) == numbers
        assert not any(routed(onboarding, n) for n in numbers)
        assert onboarding.integration(tenant).status_code == 404

    def test_twilio_failing_keeps_the_integration_in_error_until_a_retry(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        config = onboarding.provision(tenant).json()["config"]
        [number], sub = config["numbers"], config["subaccount_sid"]
        # the subaccount lookup passes, closing it fails
        onboarding.twilio.inject_failure("timeout", resource="accounts", delay=0, times=1)
        onboarding.twilio.inject_failure("http_500", resource="accounts", times=1)
        failed = delete(onboarding, tenant)
        assert failed.status_code == 502, failed.text
        assert "closing the subaccount" in failed.json()["error"]["message"]
        state = onboarding.integration(tenant).json()
        assert state["status"] == "error" and "retry DELETE" in state["last_error"] and state["last_error_at"]
        assert state["config"]["numbers"] == []  # released before the failure, and recorded so
        assert onboarding.twilio.account(sub)["status"] == "active"
        assert not routed(onboarding, number)
        assert routed(onboarding, sub)  # the subaccount is still the tenant's
        assert "integration.teardown_failed" in onboarding.audit_actions(tenant)

        assert delete(onboarding, tenant).status_code == 204
        assert onboarding.twilio.account(sub)["status"] == "closed"
        assert onboarding.integration(tenant).status_code == 404
        assert not routed(onboarding, number)

    def test_a_half_done_onboarding_is_removed_with_what_it_bought(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        offer = onboarding.next_offer()
        onboarding.twilio.inject_failure("timeout", number=offer, resource="numbers", delay=0, times=1)
        onboarding.twilio.inject_failure("http_500", number=offer, resource="numbers", times=1)
        assert onboarding.provision(tenant).status_code == 502
        [account] = onboarding.subaccounts(tenant)
        assert onboarding.numbers(account["sid"]) == [offer]
        assert delete(onboarding, tenant).status_code == 204
        assert onboarding.twilio.account(account["sid"])["status"] == "closed"
        assert onboarding.numbers(account["sid"]) == []
