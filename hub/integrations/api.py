"""A tenant's own profile and integrations. The tenant is the token's, always."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from hub.audit import service as audit
from hub.auth.deps import client_ip, request_id, tenant_with
from hub.deps import DbSession, HubRuntime
from hub.errors import AUTHENTICATED_ERRORS, NotFound, error_responses
from hub.integrations import service as integrations_service
from hub.integrations.installers import Actor, installer_for
from hub.integrations.schemas import IntegrationCheckRead, IntegrationsHealthRead
from hub.providers import integration_view
from tenants import service as tenants
from tenants.schemas import IntegrationRead, IntegrationWrite, TenantRead

router = APIRouter(prefix="/v1", tags=["tenant"], responses=AUTHENTICATED_ERRORS)

KindPath = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{1,63}$", description="connector kind, e.g. twilio")]


@router.get("/tenant", response_model=TenantRead)
def own_tenant(session: DbSession, principal: tenant_with(None)) -> TenantRead:
    """The calling tenant's profile."""
    return TenantRead.model_validate(tenants.get_tenant(session=session, tenant_id=principal.tenant_id))


@router.get("/integrations", response_model=list[IntegrationRead])
def list_integrations(session: DbSession, runtime: HubRuntime,
                      principal: tenant_with("integrations:read")) -> list[IntegrationRead]:
    """The tenant's integrations, credentials masked."""
    return [integration_view(runtime, session, i)
            for i in tenants.list_integrations(session=session, tenant_id=principal.tenant_id)]


@router.get("/integrations/health", response_model=IntegrationsHealthRead)
def integrations_health(session: DbSession, principal: tenant_with("integrations:read")) -> IntegrationsHealthRead:
    """Each of the tenant's integrations: its status, the newest sign it works (a
    delivery the provider accepted, a verified webhook, a calendar sync, a passed check)
    and the newest failure the hub recorded (a delivery attempt, a failed check, the
    integration's last error), each with its time, code and message."""
    return IntegrationsHealthRead(
        integrations=integrations_service.integrations_health(session=session, tenant_id=principal.tenant_id))


@router.post("/integrations/{kind}/check", response_model=IntegrationCheckRead)
def check_integration(kind: KindPath, request: Request, session: DbSession, runtime: HubRuntime,
                      principal: tenant_with("integrations:read")) -> IntegrationCheckRead:
    """Ask the provider now whether the integration's credentials work (the same check as
    when they were stored). The answer is a 200 either way — `ok` and the provider's
    `detail` say how it went; a failure is recorded as the integration's last error
    (its status is unchanged) and every check is audited."""
    return IntegrationCheckRead.model_validate(integrations_service.check_integration(
        session=session, runtime=runtime, tenant_id=principal.tenant_id, kind=kind, actor=principal.actor,
        ip=client_ip(request), request_id=request_id(request)))


@router.get("/integrations/{kind}", response_model=IntegrationRead)
def get_integration(kind: KindPath, session: DbSession, runtime: HubRuntime,
                    principal: tenant_with("integrations:read")) -> IntegrationRead:
    """One integration, credentials masked."""
    integration = tenants.get_integration(session=session, tenant_id=principal.tenant_id, kind=kind)
    return integration_view(runtime, session, integration)


@router.put("/integrations/{kind}", response_model=IntegrationRead, responses=error_responses(409, 502))
def put_integration(kind: KindPath, integration_in: IntegrationWrite, request: Request, session: DbSession,
                    runtime: HubRuntime, principal: tenant_with("integrations:write")
                    ) -> IntegrationRead:
    """Store an integration's credentials (sealed; shown masked only) and config, after
    the provider confirms they work. A kind no connector has is a 404 `unknown_kind`;
    credentials and config are validated by the connector's models (a 422 names every
    failing field) and checked with the provider (a 422 `provider_check_failed` says why).

    For `twilio` (your own account): `{"credentials": {"account_sid", "auth_token"},
    "config": {"numbers": ["+55…"], "channels": ["sms", "whatsapp"]}}`; Twilio is asked
    first whether the account works and owns the numbers (422 otherwise), and each
    number is routed to this integration (409 `route_taken` when another has it).

    For `whatsapp_cloud`: `{"credentials": {"phone_number_id", "waba_id", "access_token",
    "app_secret", "verify_token"}}`; the phone number ID is routed to this integration
    (409 `route_taken`) and the verify token answers Meta's handshake on `GET /webhooks/whatsapp`.

    For `smtp`: `{"credentials": {"host", "port", "from_address", "username"?, "password"?,
    "security": "starttls"|"tls"|"none"}}`; the hub connects and logs in once.

    `google_calendar` is connected through `POST /v1/integrations/google/connect` (409 here).
    """
    installer = installer_for(runtime, kind)
    try:
        before = integration_view(runtime, session,
                                  tenants.get_integration(session=session, tenant_id=principal.tenant_id, kind=kind))
    except NotFound:
        before = None
    integration = installer.install(session=session, runtime=runtime, tenant_id=principal.tenant_id,
                                    integration_in=integration_in)
    after = integration_view(runtime, session, integration)
    audit.record(session=session, tenant_id=principal.tenant_id, actor=principal.actor,
                 action="integration.credentials_set", target=kind, ip=client_ip(request),
                 request_id=request_id(request),
                 details={"before": _audit_view(before), "after": _audit_view(after)})
    return after


@router.delete("/integrations/{kind}", status_code=status.HTTP_204_NO_CONTENT,
               responses=error_responses(409, 502))
def delete_integration(kind: KindPath, request: Request, session: DbSession, runtime: HubRuntime,
                       principal: tenant_with("integrations:write")) -> Response:
    """Remove an integration and its credentials, undoing at the provider what the hub set up.

    For `twilio`: its routes go; a subaccount the hub provisioned has its numbers
    released and is closed (never a bring-your-own account). For `google_calendar`:
    the watch channels stop and the grant is revoked. When the provider fails, the
    integration is kept with status `error` and the answer is a 502: retry the DELETE.
    """
    integration = tenants.get_integration(session=session, tenant_id=principal.tenant_id, kind=kind)
    before = integration_view(runtime, session, integration)
    installer_for(runtime, kind).uninstall(session=session, runtime=runtime, integration=integration,
                                           actor=Actor(principal.actor, client_ip(request), request_id(request)))
    audit.record(session=session, tenant_id=principal.tenant_id, actor=principal.actor,
                 action="integration.deleted", target=kind, ip=client_ip(request),
                 request_id=request_id(request), details={"before": _audit_view(before)})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _audit_view(view: IntegrationRead | None) -> dict | None:
    if view is None:
        return None
    return {"status": view.status, "config": view.config, "masked_credentials": view.credentials}
