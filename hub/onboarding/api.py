"""Onboarding routes. Installing your own account and removal go through the generic
``PUT``/``DELETE /v1/integrations/{kind}``, which hand the ``twilio`` kind to this feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from hub.auth.deps import client_ip, request_id, tenant_with
from hub.deps import HubRuntime
from hub.errors import AUTHENTICATED_ERRORS, error_responses
from hub.onboarding import flows
from hub.onboarding.schemas import ProvisionCreate
from tenants.schemas import IntegrationRead

router = APIRouter(prefix="/v1", tags=["tenant"], responses=AUTHENTICATED_ERRORS)

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
           description="makes a retry safe: the same key and body answer the first result"),
]


@router.post(
    "/integrations/twilio/provision",
    response_model=IntegrationRead,
    status_code=201,
    responses={
        200: {"model": IntegrationRead, "description": "already provisioned with these settings"},
        **error_responses(409, 502),
    },
)
def provision_twilio(provision_in: ProvisionCreate, request: Request, response: Response, runtime: HubRuntime,
                     principal: tenant_with("integrations:write"),
                     idempotency_key: IdempotencyKey = None) -> IntegrationRead:
    """Onboard the tenant on Twilio: create a subaccount, buy a number with its webhooks
    pointed at the hub, seal the subaccount's token and route the number to the tenant.

    Progress is kept after each step: a retry (with the same `Idempotency-Key` or none)
    resumes a half-done onboarding and never buys a second number; a replay of a finished
    one answers its result with `Idempotent-Replay: true`. When Twilio refuses a step,
    what was done is undone and the integration is left `error` with `last_error`; when
    Twilio does not answer (502 `provider_unavailable`, with `Retry-After`), nothing is
    undone and a retry resumes.
    """
    outcome = flows.provision_twilio(runtime=runtime, tenant_id=principal.tenant_id, provision_in=provision_in,
                                     actor=principal.actor, ip=client_ip(request), request_id=request_id(request),
                                     idempotency_key=idempotency_key)
    response.status_code = outcome.status_code
    if outcome.replayed:
        response.headers["Idempotent-Replay"] = "true"
    return outcome.integration
