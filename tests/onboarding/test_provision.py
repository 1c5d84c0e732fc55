"""The Twilio onboarding saga, end to end against the sandbox Twilio through the real SDK."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx

from connectors.sandbox.server import free_port
from hub.db import utcnow
from hub.providers import SANDBOX_TWILIO_ACCOUNT_SID
from hub.webhooks.routes import resolve
from tenants import service as tenants
from tenants.models import Integration
from tenants.vault import is_sealed, mask_secret
from tests.onboarding.helpers import PROVISION, Onboarding, Tenant, wait_until


class TestProvision:
    def test_buys_a_number_points_it_at_the_hub_seals_the_token_and_routes_it(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        answer = onboarding.provision(tenant)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["status"] == "active" and body["last_error"] is None
        config = body["config"]
        assert config["provisioned"] is True and config["channels"] == ["sms", "whatsapp"]
        [number] = config["numbers"]
        assert number.startswith("+5511")

        # a subaccount of the platform's main account, named for the tenant, owning just that number
        sub = config["subaccount_sid"]
        account = onboarding.twilio.account(sub)
        assert account["status"] == "active" and account["owner_account_sid"] == SANDBOX_TWILIO_ACCOUNT_SID
        assert str(tenant.id) in account["friendly_name"]
        [owned] = onboarding.twilio.numbers(account_sid=sub)
        assert owned["phone_number"] == number
        assert (owned["sms_url"], owned["sms_method"], owned["status_callback"]) == (
            f"{onboarding.hub.url}/webhooks/twilio/messaging", "POST", f"{onboarding.hub.url}/webhooks/twilio/status")

        # the subaccount's token is sealed, and only ever shown masked
        token = account["auth_token"]
        assert body["credentials"] == {"account_sid": sub, "auth_token": mask_secret(token)}
        assert token not in answer.text and token not in onboarding.integration(tenant).text
        runtime = onboarding.runtime
        with runtime.session_factory() as session:
            row = tenants.get_integration(session=session, tenant_id=tenant.id, kind="twilio")
            assert all(is_sealed(value) for value in row.credentials.values())
            assert tenants.open_credentials(session=session, vault=runtime.vault, integration=row) == {
                "account_sid": sub, "auth_token": token}
            # inbound traffic on the number, or on the subaccount, names this tenant
            for key in (number, sub):
                target = resolve(runtime, session, kind="twilio", route_keys=[key])
                assert target is not None and (target.tenant_id, target.integration_id) == (tenant.id, row.id)

        assert onboarding.audit_actions(tenant) == ["integration.provision_started", "integration.provision_succeeded"]

        # the number's webhook reaches the hub, signed with the token the hub sealed
        delivery = onboarding.twilio.simulate_inbound(to=number, from_="+5511987654321", body="Olá")
        assert delivery.status_code == 200, delivery.response_text

    def test_bad_input_is_a_clear_422_and_writes_nothing(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        for body in ({**PROVISION, "country": "Brasil"}, {**PROVISION, "country": "ZZ"}, {**PROVISION, "channels": []},
                     {**PROVISION, "channels": ["fax"]}, {**PROVISION, "area_code": "1a"}, {"country": "BR"},
                     {**PROVISION, "extra": 1}):
            answer = onboarding.provision(tenant, body)
            assert answer.status_code == 422, body
            assert answer.json()["error"]["code"] == "validation_error"
        assert onboarding.integration(tenant).status_code == 404
        assert onboarding.subaccounts(tenant) == []

    def test_needs_the_integrations_write_scope(self, onboarding: Onboarding):
        from tests.support import bearer, create_client, create_tenant, get_token

        tenant_id = create_tenant(onboarding.runtime, "reader")
        creds = create_client(onboarding.runtime, tenant_id, ["integrations:read"])
        answer = onboarding.http.post("/v1/integrations/twilio/provision", json=PROVISION,
                                      headers=bearer(get_token(onboarding.http, creds)))
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "insufficient_scope"


class TestIdempotency:
    def test_a_replay_answers_the_first_result_and_buys_nothing(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        first = onboarding.provision(tenant, key="onboard-1")
        assert first.status_code == 201
        again = onboarding.provision(tenant, key="onboard-1")
        assert again.status_code == 201 and again.headers["Idempotent-Replay"] == "true"
        assert again.json()["config"] == first.json()["config"]
        reused = onboarding.provision(tenant, {**PROVISION, "area_code": "21"}, key="onboard-1")
        assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
        # without a key: the finished onboarding is the answer, or a 409 when asked for another
        plain = onboarding.provision(tenant)
        assert plain.status_code == 200 and plain.json()["config"] == first.json()["config"]
        other = onboarding.provision(tenant, {**PROVISION, "area_code": "21"})
        assert other.status_code == 409 and other.json()["error"]["code"] == "already_provisioned"
        [account] = onboarding.subaccounts(tenant)
        assert len(onboarding.numbers(account["sid"])) == 1

    def test_a_duplicate_while_the_first_runs_is_a_409_with_retry_after(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        # hold the first run inside Twilio's number search for a moment
        onboarding.twilio.inject_failure("timeout", resource="available_numbers", delay=1.5, times=1)
        results = {}
        first = threading.Thread(target=lambda: results.update(first=onboarding.provision(tenant, key="k")))
        first.start()
        wait_until(lambda: not onboarding.twilio.failures())
        duplicate = onboarding.provision(tenant, key="k")
        assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "idempotency_key_in_flight"
        assert int(duplicate.headers["Retry-After"]) >= 1
        keyless = onboarding.provision(tenant)
        assert keyless.status_code == 409 and keyless.json()["error"]["code"] == "provisioning_in_progress"
        assert int(keyless.headers["Retry-After"]) >= 1
        first.join(10)
        assert results["first"].status_code == 201
        [account] = onboarding.subaccounts(tenant)
        assert len(onboarding.numbers(account["sid"])) == 1


class TestResume:
    def test_twilio_failing_the_purchase_then_a_retry_buys_one_number(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        offer = onboarding.next_offer()
        onboarding.twilio.inject_failure("http_500", number=offer, resource="numbers", times=1)
        failed = onboarding.provision(tenant, key="buy")
        assert failed.status_code == 502, failed.text
        error = failed.json()["error"]
        assert error["code"] == "provider_unavailable" and "number" in error["message"]
        assert "retry" in error["message"] and failed.headers["Retry-After"] == "1"
        state = onboarding.integration(tenant).json()
        assert state["status"] == "error" and "retry" in state["last_error"] and state["last_error_at"]
        # nothing undone: the subaccount waits for the retry
        [account] = onboarding.subaccounts(tenant)
        assert account["status"] == "active" and onboarding.numbers(account["sid"]) == []

        retried = onboarding.provision(tenant, key="buy")  # the same key runs again: the first answered no result
        assert retried.status_code == 201, retried.text
        assert retried.json()["config"]["numbers"] == [offer]
        assert [a["sid"] for a in onboarding.subaccounts(tenant)] == [account["sid"]]
        assert onboarding.numbers(account["sid"]) == [offer]

    def test_a_failure_after_the_purchase_then_a_retry_keeps_the_one_number(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        offer = onboarding.next_offer()
        # the purchase goes through; the webhook update after it fails
        onboarding.twilio.inject_failure("timeout", number=offer, resource="numbers", delay=0, times=1)
        onboarding.twilio.inject_failure("http_503", number=offer, resource="numbers", times=1)
        failed = onboarding.provision(tenant)
        assert failed.status_code == 502 and "webhooks" in failed.json()["error"]["message"]
        [account] = onboarding.subaccounts(tenant)
        assert onboarding.numbers(account["sid"]) == [offer]  # bought, and kept
        assert onboarding.integration(tenant).json()["status"] == "error"

        retried = onboarding.provision(tenant)
        assert retried.status_code == 201, retried.text
        assert [a["sid"] for a in onboarding.subaccounts(tenant)] == [account["sid"]]
        [owned] = onboarding.twilio.numbers(account_sid=account["sid"])
        assert owned["phone_number"] == offer
        assert owned["sms_url"] == f"{onboarding.hub.url}/webhooks/twilio/messaging"
        actions = onboarding.audit_actions(tenant)
        assert actions.count("integration.provision_started") == 2
        assert "integration.provision_failed" in actions and "integration.provision_compensated" not in actions

    def test_a_half_done_onboarding_resumes_only_with_its_own_settings(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        onboarding.twilio.inject_failure("http_500", resource="available_numbers", times=1)
        assert onboarding.provision(tenant).status_code == 502
        other = onboarding.provision(tenant, {**PROVISION, "area_code": "21"})
        assert other.status_code == 409 and other.json()["error"]["code"] == "provisioning_pending"
        assert onboarding.provision(tenant).status_code == 201


class TestCompensation:
    def test_a_refused_step_releases_the_number_and_closes_the_subaccount(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        offer = onboarding.next_offer()
        # the purchase goes through, then Twilio refuses the webhook update outright (a 400)
        onboarding.twilio.inject_failure("timeout", number=offer, resource="numbers", delay=0, times=1)
        onboarding.twilio.inject_failure("api_error", code=21408, number=offer, resource="numbers", times=1)
        failed = onboarding.provision(tenant, key="refused")
        assert failed.status_code == 502, failed.text
        error = failed.json()["error"]
        assert error["code"] == "provider_rejected" and "21408" in error["message"] and "undone" in error["message"]

        [account] = onboarding.subaccounts(tenant)
        assert account["status"] == "closed"
        assert onboarding.numbers(account["sid"]) == []
        assert onboarding.next_offer() == offer  # released: for sale again
        state = onboarding.integration(tenant).json()
        assert state["status"] == "error" and state["last_error_at"]
        assert "webhooks" in state["last_error"] and "undone" in state["last_error"]
        assert state["credentials"] == {} and state["config"]["numbers"] == []
        assert "subaccount_sid" not in state["config"]
        with onboarding.runtime.session_factory() as session:
            assert resolve(onboarding.runtime, session, kind="twilio", route_keys=[offer]) is None
        assert onboarding.audit_actions(tenant) == [
            "integration.provision_started", "integration.provision_failed", "integration.provision_compensated"]

        # a retry (the same key is free again) starts over with a new subaccount
        retried = onboarding.provision(tenant, key="refused")
        assert retried.status_code == 201
        assert retried.json()["config"]["subaccount_sid"] != account["sid"]

    def test_no_number_for_sale_closes_the_subaccount_and_is_a_422(self, onboarding: Onboarding):
        tenant = onboarding.tenant()
        answer = onboarding.provision(tenant, {**PROVISION, "area_code": "10"})  # no such DDD: nothing for sale
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "no_numbers_available" and "undone" in error["message"]
        [account] = onboarding.subaccounts(tenant)
        assert account["status"] == "closed"
        state = onboarding.integration(tenant).json()
        assert state["status"] == "error" and "area 10" in state["last_error"]
        # a country Twilio sells nothing in (the sandbox knows BR, US and CA) is the same 422
        elsewhere = onboarding.provision(tenant, {**PROVISION, "country": "FR", "area_code": None})
        assert elsewhere.status_code == 422 and elsewhere.json()["error"]["code"] == "no_numbers_available"
        assert {a["status"] for a in onboarding.subaccounts(tenant)} == {"closed"}

    def test_a_number_routed_to_another_integration_is_undone_with_a_409(self, onboarding: Onboarding):
        from hub.webhooks.routes import claim_route

        other = onboarding.tenant("other")
        tenant = onboarding.tenant()
        offer = onboarding.next_offer()
        runtime = onboarding.runtime
        with runtime.session_factory() as session, session.begin():
            holder = tenants.put_integration(session=session, vault=runtime.vault, tenant_id=other.id, kind="twilio",
                                             credentials={}, config={})
            claim_route(session, kind="twilio", route_key=offer, integration=holder)
        answer = onboarding.provision(tenant)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "route_taken"
        [account] = onboarding.subaccounts(tenant)
        assert account["status"] == "closed"
        with runtime.session_factory() as session:
            target = resolve(runtime, session, kind="twilio", route_keys=[offer])
            assert target is not None and target.tenant_id == other.id
            assert session.get(Integration, holder.id) is not None


@contextmanager
def hub_process(onboarding: Onboarding, database_url: str, tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``hub serve`` in its own process, on the live hub's database and sandbox, with
    the same public URL (so the live hub's tokens are valid there)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_DATABASE_URL=database_url, HUB_MASTER_KEYS=onboarding.runtime.settings.master_keys.get_secret_value(),
        HUB_PUBLIC_URL=onboarding.hub.url, HUB_SANDBOX="1", HUB_SANDBOX_URL=onboarding.hub.sandbox_url,
        HUB_EMBEDDED_WORKER="0", HUB_RELAY_IN_PROCESS="0", HUB_VAR_DIR=str(tmp_path / "crashing-hub"),
        HUB_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        assert proc.poll() is None, "hub serve exited"
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(live, timeout=90, what="hub serve to start")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def let_the_lease_run_out(onboarding: Onboarding, tenant: Tenant) -> None:
    # LEASE_SECONDS of real time, moved into the past instead of waited for
    with onboarding.runtime.session_factory() as session, session.begin():
        row = tenants.get_integration(session=session, tenant_id=tenant.id, kind="twilio")
        config = copy.deepcopy(row.config)
        assert config["provisioning"]["state"] == "running"
        config["provisioning"]["lease_until"] = (utcnow() - timedelta(seconds=1)).isoformat()
        row.config = config


class TestCrash:
    def test_a_hub_killed_mid_purchase_leaves_a_retry_that_buys_nothing_more(self, onboarding: Onboarding,
                                                                              database_url, tmp_path):
        tenant = onboarding.tenant()
        offer = onboarding.next_offer()
        # Twilio sits on the purchase for 3 s, then makes it: the hub dies before it hears back
        onboarding.twilio.inject_failure("timeout", number=offer, resource="numbers", delay=3, times=1)
        outcome: dict = {}
        with hub_process(onboarding, database_url, tmp_path) as (proc, url):
            def call() -> None:
                try:
                    outcome["answer"] = httpx.post(f"{url}/v1/integrations/twilio/provision", json=PROVISION,
                                                   headers={**tenant.headers, "Idempotency-Key": "crash"}, timeout=20)
                except httpx.HTTPError as exc:
                    outcome["error"] = exc

            caller = threading.Thread(target=call)
            caller.start()
            wait_until(lambda: not onboarding.twilio.failures(), timeout=20, what="the purchase to reach Twilio")
            proc.kill()
            proc.wait(10)
            caller.join(10)
        assert "error" in outcome, "the killed hub answered"
        [account] = onboarding.subaccounts(tenant)
        wait_until(lambda: onboarding.numbers(account["sid"]) == [offer], what="Twilio to complete the purchase")
        assert onboarding.integration(tenant).json()["status"] == "pending"

        # the dead run still holds its lease: a retry is told to come back
        busy = onboarding.provision(tenant, key="crash")
        assert busy.status_code == 409 and int(busy.headers["Retry-After"]) >= 1
        let_the_lease_run_out(onboarding, tenant)

        retried = onboarding.provision(tenant, key="crash")
        assert retried.status_code == 201, retried.text
        config = retried.json()["config"]
        assert config["numbers"] == [offer] and config["subaccount_sid"] == account["sid"]
        assert config["provisioning"]["attempts"] == 2
        assert [a["sid"] for a in onboarding.subaccounts(tenant)] == [account["sid"]]
        assert onboarding.numbers(account["sid"]) == [offer]
        replay = onboarding.provision(tenant, key="crash")
        assert replay.status_code == 201 and replay.headers["Idempotent-Replay"] == "true"
