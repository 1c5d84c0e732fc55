"""Onboarding a tenant on Twilio (a saga), and removing what it bought.

The steps, with the platform's main account (``hub.providers.platform_twilio``):

1. **subaccount** — named for the tenant; a run that crashed after creating it finds
   it by that name instead of creating another;
2. **number** — search what is for sale, then buy one into the subaccount with its
   webhooks set. The chosen number is committed *before* the purchase, so a run that
   crashed mid-purchase asks Twilio whether the subaccount owns it before buying again;
3. **webhooks** — the number's SmsUrl and StatusCallback pointed at the hub;
4. **credentials** — the subaccount's SID and auth token sealed in the vault;
5. **routes** — the number and the subaccount routed to the integration, status ``active``.

Progress is committed after each step in ``config.provisioning`` together with a lease
(renewed at each step), so only one run works at a time and a crashed run's work is
resumed once its lease runs out. Each run carries an id checked at every commit.

A refusal (a Twilio 4xx, no number for sale, a number routed elsewhere) undoes what
was done in reverse — routes and credentials, the number, the subaccount — and leaves
the integration ``error``. A call Twilio did not answer (5xx, 429, timeout) is
ambiguous: the purchase may have happened. Nothing is undone then; the integration is
left ``error`` saying so, and a retry resumes without buying a second number.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.twilio import TwilioConnector
from hub.audit import service as audit
from hub.db import insert_ignore, transaction, utcnow
from hub.errors import Conflict, HubError, Invalid, NotFound
from hub.idempotency import IdempotencyKey, Replay
from hub.idempotency import claim as claim_key
from hub.idempotency import complete as complete_key
from hub.onboarding.schemas import ProvisionCreate
from hub.onboarding.service import (
    TWILIO,
    drop_routes,
    forget_routes,
    holds_provider_resources,
    is_provisioned,
    lease_seconds_left,
    messaging_webhook_url,
    onboarding_in_progress,
    provider_failure,
    provisioning_state,
    status_webhook_url,
    sync_routes,
)
from hub.providers import integration_view, platform_twilio
from hub.runtime import Runtime
from hub.webhooks.routes import release_routes
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus, Tenant
from tenants.repository import IntegrationRepository
from tenants.schemas import IntegrationRead

log = structlog.get_logger("hub.onboarding")

IDEMPOTENCY_SCOPE = "twilio.provision"
# Longer than one step can take (a few provider calls, each bounded by its timeout).
LEASE_SECONDS = 90
OFFERS_PER_SEARCH = 5


@dataclass(frozen=True)
class Provisioned:
    """What the provision route answers."""

    integration: IntegrationRead
    status_code: int
    replayed: bool = False


@dataclass
class _Run:
    runtime: Runtime
    tenant_id: uuid.UUID
    integration_id: uuid.UUID
    run_id: str
    actor: str
    ip: str | None
    request_id: str | None
    idempotency_key: str | None
    provision_in: ProvisionCreate
    config: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        return self.config["provisioning"]

    def audit(self, session: Session, action: str, *, outcome: str = "success", **details: Any) -> None:
        audit.record(session=session, tenant_id=self.tenant_id, actor=self.actor, action=action, target=TWILIO,
                     outcome=outcome, ip=self.ip, request_id=self.request_id, details=details)


class _Superseded(Conflict):
    """Another run took this onboarding over (ours outlived its lease)."""


# --- provisioning --------------------------------------------------------------------------


def provision_twilio(*, runtime: Runtime, tenant_id: uuid.UUID, provision_in: ProvisionCreate, actor: str,
                     ip: str | None = None, request_id: str | None = None,
                     idempotency_key: str | None = None) -> Provisioned:
    """Run, resume or replay the tenant's Twilio onboarding (commits as it goes)."""
    main = platform_twilio(runtime)  # 503 before anything is written when it is not configured
    try:
        started = _begin(runtime=runtime, tenant_id=tenant_id, provision_in=provision_in, actor=actor, ip=ip,
                         request_id=request_id, idempotency_key=idempotency_key)
        if isinstance(started, Provisioned):
            return started
        return _run_saga(started, main)
    finally:
        main.close()


def _begin(*, runtime: Runtime, tenant_id: uuid.UUID, provision_in: ProvisionCreate, actor: str, ip: str | None,
           request_id: str | None, idempotency_key: str | None) -> _Run | Provisioned:
    """Claim the idempotency key and the onboarding's lease, committed before any
    provider call: a concurrent duplicate then sees them and gets a 409."""
    with transaction(runtime.session_factory) as session:
        integration = _lock_integration(session, tenant_id)
        lease_left = lease_seconds_left(integration)
        claimed: IdempotencyKey | None = None
        if idempotency_key:
            stale = session.get(IdempotencyKey, (tenant_id, IDEMPOTENCY_SCOPE, idempotency_key))
            if stale is not None and stale.state != "completed" and lease_left == 0:
                # its run died (the lease ran out): this request takes the key over and resumes
                session.delete(stale)
                session.flush()
            result = claim_key(session=session, tenant_id=tenant_id, scope=IDEMPOTENCY_SCOPE, key=idempotency_key,
                               body=provision_in.model_dump(mode="json"))
            if isinstance(result, Replay):
                return _replay(session, runtime, tenant_id, result)
            claimed = result
        if lease_left > 0:
            raise onboarding_in_progress(integration)
        if not is_provisioned(integration) and integration.credentials:
            raise Conflict("the tenant already has a Twilio account configured; DELETE /v1/integrations/twilio "
                           "first to have the hub provision one", code="integration_exists")
        state = provisioning_state(integration)
        if state.get("state") == "done" and integration.status == IntegrationStatus.ACTIVE:
            if state.get("request") != provision_in.request():
                raise Conflict("this tenant's Twilio integration is already provisioned with other settings; "
                               "DELETE /v1/integrations/twilio first to provision another", code="already_provisioned")
            if claimed is not None:
                complete_key(session=session, claim_row=claimed, resource_id=integration.id, status_code=200)
            view = integration_view(runtime, session, integration)
            return Provisioned(view, 200)
        resuming = holds_provider_resources(integration)
        if resuming and state.get("request") != provision_in.request():
            asked = state.get("request") or {}
            raise Conflict(f"a half-done onboarding for country {asked.get('country')} area "
                           f"{asked.get('area_code') or 'any'} exists: retry it with the same country and area code "
                           "to finish it, or DELETE /v1/integrations/twilio to undo it", code="provisioning_pending")
        tenant = session.get(Tenant, tenant_id)
        run = _Run(runtime=runtime, tenant_id=tenant_id, integration_id=integration.id, run_id=uuid.uuid4().hex,
                   actor=actor, ip=ip, request_id=request_id, idempotency_key=idempotency_key,
                   provision_in=provision_in, config={})
        config = copy.deepcopy(integration.config)
        config.update(provisioned=True, channels=provision_in.channels, numbers=config.get("numbers", []))
        config["provisioning"] = {
            **state,
            "state": "running",
            "run": run.run_id,
            "request": provision_in.request(),
            # a crashed run's subaccount is found again by this name
            "friendly_name": state.get("friendly_name") or _friendly_name(tenant),
            "attempts": int(state.get("attempts") or 0) + 1,
            "lease_until": _lease_until(),
        }
        integration.config = config
        integration.status = IntegrationStatus.PENDING
        run.config = copy.deepcopy(config)
        run.audit(session, "integration.provision_started", resuming=resuming,
                  attempt=config["provisioning"]["attempts"], request=provision_in.model_dump(mode="json"))
        return run


def _run_saga(run: _Run, main: TwilioConnector) -> Provisioned:
    step = "subaccount"
    try:
        subaccount_sid, token = _subaccount_step(run, main)
        step = "number"
        number_sid = _number_step(run, main, subaccount_sid)
        step = "webhooks"
        _webhooks_step(run, main, subaccount_sid, number_sid)
        step = "credentials"
        _credentials_step(run, subaccount_sid, token)
        step = "routes"
        return _activate(run, subaccount_sid)
    except _Superseded:
        raise
    except TransientProviderError as exc:
        _pause(run, step, exc)
        raise provider_failure(exc, f"Twilio did not answer during the {step} step of the onboarding",
                               suffix="; what was done is kept: retry the request to resume") from None
    except (PermanentProviderError, HubError) as exc:
        undone = _compensate(run, main, step, exc)
        suffix = "; the onboarding was undone" if undone else (
            "; undoing it failed too: retry to resume, or DELETE /v1/integrations/twilio to remove it")
        if isinstance(exc, ProviderError):
            raise provider_failure(exc, f"Twilio refused the {step} step of the onboarding", suffix=suffix) from None
        raise type(exc)(exc.message + suffix, code=exc.code, headers=exc.headers, details=exc.details) from None
    except BaseException:
        _release_lease(run)  # an unexpected failure: keep the progress, let a retry resume at once
        raise


def _subaccount_step(run: _Run, main: TwilioConnector) -> tuple[str, str]:
    sid = run.config.get("subaccount_sid")
    if sid:
        try:
            account = main.fetch_subaccount(sid)
        except PermanentProviderError as exc:
            if exc.status != 404:
                raise
            account = None
        if account is not None and account.status == "active":
            return sid, _token_of(account.auth_token)
        # closed (or unknown to Twilio) behind our back: what it held is gone with it; start over
        _save(run, _forget_subaccount)
    friendly_name = run.state["friendly_name"]
    found = main.find_subaccount(friendly_name)
    sid, token = found if found else main.create_subaccount(friendly_name)
    _save(run, lambda config: config.update(subaccount_sid=sid))
    return sid, _token_of(token)


def _number_step(run: _Run, main: TwilioConnector, subaccount_sid: str) -> str:
    number_sids: dict[str, str] = run.config.get("number_sids") or {}
    if number_sids:
        return next(iter(number_sids.values()))
    pending = run.state.get("pending_number")
    if pending:
        # a purchase whose answer we never saw: it may have gone through
        owned_sid = main.find_number(pending, account_sid=subaccount_sid)
        if owned_sid:
            _save(run, lambda config: _bought(config, pending, owned_sid))
            return owned_sid
    country, area_code = run.provision_in.country, run.provision_in.area_code
    offers: list[str] = []
    for number_type in ("local", "mobile"):
        try:
            offers = main.find_available_numbers(country, area_code, limit=OFFERS_PER_SEARCH,
                                                 number_type=number_type)
        except PermanentProviderError as exc:
            if exc.status != 404:
                raise
            # a 404: Twilio sells no numbers of this type in this country
        if offers:
            break
    where = f"{country}" + (f" area {area_code}" if area_code else "")
    if not offers:
        raise Invalid(f"Twilio has no SMS-capable number for sale in {where}; try another area code",
                      code="no_numbers_available")
    settings = run.runtime.settings
    for number in offers:
        _save(run, lambda config, n=number: config["provisioning"].update(pending_number=n))
        try:
            number_sid = main.buy_number(number, sms_url=messaging_webhook_url(settings),
                                         status_callback=status_webhook_url(settings), account_sid=subaccount_sid)
        except PermanentProviderError as exc:
            if exc.code == "21422":  # sold to someone else since the search: take the next offer
                continue
            raise
        _save(run, lambda config, n=number, s=number_sid: _bought(config, n, s))
        return number_sid
    raise Invalid(f"every number offered in {where} was sold before the hub could buy it; try again",
                  code="no_numbers_available")


def _webhooks_step(run: _Run, main: TwilioConnector, subaccount_sid: str, number_sid: str) -> None:
    settings = run.runtime.settings
    main.update_number_webhooks(number_sid, sms_url=messaging_webhook_url(settings),
                                status_callback=status_webhook_url(settings), account_sid=subaccount_sid)
    _save(run, lambda config: config["provisioning"].update(webhooks_at=utcnow().isoformat()))


def _credentials_step(run: _Run, subaccount_sid: str, token: str) -> None:
    vault = run.runtime.vault
    with transaction(run.runtime.session_factory) as session:
        integration, config = _own(session, run)
        integration.credentials = {
            name: vault.seal_field(session, tenant_id=run.tenant_id, integration_id=integration.id,
                                   field_name=name, value=value)
            for name, value in (("account_sid", subaccount_sid), ("auth_token", token))
        }
        config["provisioning"].update(sealed_at=utcnow().isoformat(), lease_until=_lease_until())
        integration.config = config
        run.config = copy.deepcopy(config)


def _activate(run: _Run, subaccount_sid: str) -> Provisioned:
    runtime = run.runtime
    with transaction(runtime.session_factory) as session:
        integration, config = _own(session, run)
        sync_routes(session=session, runtime=runtime, integration=integration,
                    route_keys=[*config.get("numbers", []), subaccount_sid])
        state = config["provisioning"]
        state.update(state="done", lease_until=None, pending_number=None, failed_step=None, error=None,
                     done_at=utcnow().isoformat())
        integration.config = config
        integration.status = IntegrationStatus.ACTIVE
        integration.last_error = None
        integration.last_error_at = None
        run.audit(session, "integration.provision_succeeded", subaccount_sid=subaccount_sid,
                  numbers=config.get("numbers", []), channels=config.get("channels", []))
        if run.idempotency_key:
            row = session.get(IdempotencyKey, (run.tenant_id, IDEMPOTENCY_SCOPE, run.idempotency_key))
            if row is not None:
                complete_key(session=session, claim_row=row, resource_id=integration.id, status_code=201)
        session.flush()
        view = integration_view(runtime, session, integration)
    log.info("twilio onboarding done", tenant_id=str(run.tenant_id), subaccount=subaccount_sid)
    return Provisioned(view, 201)


# --- when a step fails -----------------------------------------------------------------------


def _pause(run: _Run, step: str, exc: ProviderError) -> None:
    """An unanswered call: keep everything for a retry to resume."""
    message = (f"the {step} step of the Twilio onboarding failed: {exc.message}; what was done is kept, "
               "retry POST /v1/integrations/twilio/provision to resume")
    with transaction(run.runtime.session_factory) as session:
        integration, config = _own(session, run)
        config["provisioning"].update(state="failed", lease_until=None, failed_step=step, error=exc.message)
        integration.config = config
        tenants.mark_integration_error(session=session, integration=integration, error=message)
        _drop_key_claim(session, run)
        run.audit(session, "integration.provision_failed", outcome="failure", step=step, error=exc.message,
                  provider_code=exc.code, retryable=True, compensated=False)


def _compensate(run: _Run, main: TwilioConnector, step: str, exc: Exception) -> bool:
    """Undo the steps in reverse; True when nothing is left at Twilio."""
    reason = getattr(exc, "message", str(exc))
    config = _latest_config(run)
    if (config.get("provisioning") or {}).get("run") != run.run_id:
        return False  # another run took over (ours outlived its lease): its work is not ours to undo
    subaccount_sid = config.get("subaccount_sid")
    numbers: dict[str, str] = dict(config.get("number_sids") or {})
    problems: list[str] = []
    released: list[str] = []
    pending = (config.get("provisioning") or {}).get("pending_number")
    try:
        if pending and pending not in numbers and subaccount_sid:
            found = main.find_number(pending, account_sid=subaccount_sid)
            if found:
                numbers[pending] = found
    except ProviderError as lookup_failed:
        problems.append(f"looking for {pending}: {lookup_failed.message}")
    for number, number_sid in numbers.items():
        try:
            main.release_number(number_sid, account_sid=subaccount_sid)
            released.append(number)
        except ProviderError as release_failed:
            problems.append(f"releasing {number}: {release_failed.message}")
    closed = False
    if subaccount_sid:
        try:
            main.close_subaccount(subaccount_sid)
            closed = True  # Twilio releases a closed account's numbers, whatever failed above
        except ProviderError as close_failed:
            problems.append(f"closing subaccount {subaccount_sid}: {close_failed.message}")
    undone = closed or (not subaccount_sid and not problems)
    with transaction(run.runtime.session_factory) as session:
        integration, config = _own(session, run)
        drop_routes(session=session, runtime=run.runtime, integration_id=integration.id)
        integration.credentials = {}
        if undone:
            _forget_subaccount(config)
        else:
            config["number_sids"] = {n: s for n, s in numbers.items() if n not in released}
            config["numbers"] = list(config["number_sids"])
        config["provisioning"].update(state="failed", lease_until=None, failed_step=step, error=reason)
        integration.config = config
        message = f"the {step} step of the Twilio onboarding failed: {reason}; " + (
            "it was undone" if undone else "undoing it failed too (" + "; ".join(problems) + "): retry to resume, "
            "or DELETE /v1/integrations/twilio to remove it")
        tenants.mark_integration_error(session=session, integration=integration, error=message)
        _drop_key_claim(session, run)
        run.audit(session, "integration.provision_failed", outcome="failure", step=step, error=reason,
                  provider_code=getattr(exc, "code", None), retryable=False, compensated=undone)
        run.audit(session, "integration.provision_compensated", outcome="success" if undone else "failure",
                  released_numbers=released, closed_subaccount=subaccount_sid if closed else None, problems=problems)
    log.warning("twilio onboarding failed", tenant_id=str(run.tenant_id), step=step, undone=undone)
    return undone


def _release_lease(run: _Run) -> None:
    try:
        with transaction(run.runtime.session_factory) as session:
            integration, config = _own(session, run)
            config["provisioning"].update(state="failed", lease_until=None)
            integration.config = config
            _drop_key_claim(session, run)
    except (SQLAlchemyError, HubError) as exc:  # the lease then simply runs out
        log.warning("could not release the onboarding lease", error=type(exc).__name__)


# --- removal ----------------------------------------------------------------------------------


def teardown_twilio(*, runtime: Runtime, session: Session, integration: Integration, actor: str,
                    ip: str | None = None, request_id: str | None = None) -> None:
    """Before an integration is deleted: release what the hub bought for it (never
    anything of a bring-your-own account) and drop its routes. When Twilio fails, the
    integration stays, marked ``error`` (committed apart), and the caller gets a 502."""
    if lease_seconds_left(integration) > 0:
        raise onboarding_in_progress(integration)
    subaccount_sid = integration.config.get("subaccount_sid")
    friendly_name = provisioning_state(integration).get("friendly_name")
    if is_provisioned(integration) and (subaccount_sid or friendly_name):
        main = platform_twilio(runtime)
        step = "checking the subaccount"
        released: list[str] = []
        try:
            if not subaccount_sid:
                # a run that crashed between creating the subaccount and recording it
                found = main.find_subaccount(friendly_name)
                subaccount_sid = found[0] if found else None
            account = main.fetch_subaccount(subaccount_sid) if subaccount_sid else None
            if account is not None and account.status != "closed":
                step = "releasing its numbers"
                for number_sid, number in main.list_numbers(account_sid=subaccount_sid):
                    main.release_number(number_sid, account_sid=subaccount_sid)
                    released.append(number)
                step = "closing the subaccount"
                main.close_subaccount(subaccount_sid)
        except PermanentProviderError as exc:
            # a 404 is a subaccount Twilio no longer knows: nothing is left to release
            if exc.status != 404:
                _teardown_failed(runtime, integration, actor, ip, request_id, step, exc, released)
                raise provider_failure(exc, f"Twilio failed while {step}",
                                       suffix="; the integration is kept: retry the DELETE") from None
        except TransientProviderError as exc:
            _teardown_failed(runtime, integration, actor, ip, request_id, step, exc, released)
            raise provider_failure(exc, f"Twilio did not answer while {step}",
                                   suffix="; the integration is kept: retry the DELETE") from None
        finally:
            main.close()
        if subaccount_sid:
            audit.record(session=session, tenant_id=integration.tenant_id, actor=actor,
                         action="integration.deprovisioned", target=TWILIO, ip=ip, request_id=request_id,
                         details={"subaccount_sid": subaccount_sid, "released_numbers": released})
    drop_routes(session=session, runtime=runtime, integration_id=integration.id)


def _teardown_failed(runtime: Runtime, integration: Integration, actor: str, ip: str | None,
                     request_id: str | None, step: str, exc: ProviderError, released: list[str]) -> None:
    # the request's own transaction rolls back with the 502: this is written apart
    with transaction(runtime.session_factory) as session:
        row = IntegrationRepository(session, integration.tenant_id).get_by_id(integration.id)
        if row is None:
            return
        if released:
            config = copy.deepcopy(row.config)
            config["numbers"] = [n for n in config.get("numbers", []) if n not in released]
            config["number_sids"] = {n: s for n, s in (config.get("number_sids") or {}).items() if n not in released}
            row.config = config
            release_routes(session, integration_id=row.id, route_keys=released)
            forget_routes(runtime, released)
        tenants.mark_integration_error(session=session, integration=row, error=(
            f"removing the Twilio integration failed while {step}: {exc.message}; "
            "retry DELETE /v1/integrations/twilio"))
        audit.record(session=session, tenant_id=integration.tenant_id, actor=actor,
                     action="integration.teardown_failed", target=TWILIO, outcome="failure", ip=ip,
                     request_id=request_id,
                     details={"step": step, "error": exc.message, "provider_code": exc.code,
                              "released_numbers": released})


# --- persistence --------------------------------------------------------------------------------


def _lock_integration(session: Session, tenant_id: uuid.UUID) -> Integration:
    """The tenant's Twilio integration (created pending if missing), locked for this
    transaction: the UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite)
    before we read, so two requests cannot both start a run."""
    now = utcnow()
    insert_ignore(session, Integration, {
        "id": uuid.uuid4(), "tenant_id": tenant_id, "kind": TWILIO, "status": IntegrationStatus.PENDING,
        "config": {}, "credentials": {}, "created_at": now, "updated_at": now,
    }, conflict=["tenant_id", "kind"])
    session.execute(update(Integration).where(Integration.tenant_id == tenant_id, Integration.kind == TWILIO)
                    .values(updated_at=now))
    integration = session.scalar(select(Integration).where(Integration.tenant_id == tenant_id,
                                                           Integration.kind == TWILIO)
                                 .execution_options(populate_existing=True))
    assert integration is not None
    return integration


def _own(session: Session, run: _Run) -> tuple[Integration, dict[str, Any]]:
    """The run's integration and a copy of its config; 409 when another run took over."""
    integration = IntegrationRepository(session, run.tenant_id).get_by_id(run.integration_id)
    if integration is None:
        raise NotFound("the Twilio integration was removed during its onboarding")
    config = copy.deepcopy(integration.config)
    if (config.get("provisioning") or {}).get("run") != run.run_id:
        raise _Superseded("another request took this onboarding over; retry to see its outcome",
                          code="provisioning_in_progress", headers={"Retry-After": "1"})
    return integration, config


def _save(run: _Run, change: Callable[[dict[str, Any]], None]) -> None:
    """Commit one step's progress (``change`` edits the config) and renew the lease."""
    with transaction(run.runtime.session_factory) as session:
        integration, config = _own(session, run)
        change(config)
        config["provisioning"]["lease_until"] = _lease_until()
        integration.config = config
        run.config = copy.deepcopy(config)


def _latest_config(run: _Run) -> dict[str, Any]:
    with run.runtime.session_factory() as session:
        integration = IntegrationRepository(session, run.tenant_id).get_by_id(run.integration_id)
        return copy.deepcopy(integration.config) if integration else run.config


def _drop_key_claim(session: Session, run: _Run) -> None:
    # a failed run answers no result: the same key may try again
    if run.idempotency_key:
        row = session.get(IdempotencyKey, (run.tenant_id, IDEMPOTENCY_SCOPE, run.idempotency_key))
        if row is not None and row.state != "completed":
            session.delete(row)


def _replay(session: Session, runtime: Runtime, tenant_id: uuid.UUID, replay: Replay) -> Provisioned:
    integration = (IntegrationRepository(session, tenant_id).get_by_id(replay.resource_id)
                   if replay.resource_id else None)
    if integration is None:
        raise NotFound("the integration this request provisioned has since been removed")
    view = integration_view(runtime, session, integration)
    return Provisioned(view, replay.status_code, replayed=True)


def _bought(config: dict[str, Any], number: str, number_sid: str) -> None:
    config["number_sids"] = {number: number_sid}
    config["numbers"] = [number]
    config["provisioning"]["pending_number"] = None


def _forget_subaccount(config: dict[str, Any]) -> None:
    config.pop("subaccount_sid", None)
    config["number_sids"] = {}
    config["numbers"] = []
    config.setdefault("provisioning", {})["pending_number"] = None


def _friendly_name(tenant: Tenant | None) -> str:
    # Twilio allows 64 characters; the id keeps it unique, the slug makes it readable
    return f"hub {tenant.id} {tenant.slug}"[:64] if tenant else f"hub {uuid.uuid4()}"


def _lease_until() -> str:
    return (utcnow() + timedelta(seconds=LEASE_SECONDS)).isoformat()


def _token_of(token: str | None) -> str:
    if not token:
        raise PermanentProviderError("Twilio did not return the subaccount's auth token", code="no_auth_token")
    return token

