"""WhatsApp Cloud API routes: the account's message templates (tenant API) and Meta's
webhook subscription handshake (public, answered from the verify token alone)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from hub.audit import service as audit
from hub.auth.deps import client_ip, request_id, tenant_with
from hub.deps import DbSession, HubRuntime
from hub.errors import AUTHENTICATED_ERRORS, error_responses
from hub.templates import service as templates
from hub.whatsapp import service
from hub.whatsapp.schemas import (
    TemplateMappingList,
    TemplateMappingRead,
    TemplateMappingWrite,
    TemplateSyncRead,
    WhatsAppTemplateList,
    WhatsAppTemplateRead,
)

router = APIRouter(prefix="/v1/integrations/whatsapp_cloud", tags=["whatsapp"], responses=AUTHENTICATED_ERRORS)
webhook_router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.get("/templates", response_model=WhatsAppTemplateList, responses=error_responses(404))
def list_templates(session: DbSession, principal: tenant_with("integrations:read")) -> WhatsAppTemplateList:
    """The WhatsApp Business account's message templates as last synced (name × language,
    Meta's status, placeholders to fill per component)."""
    rows = service.list_templates(session=session, tenant_id=principal.tenant_id)
    return WhatsAppTemplateList(data=[WhatsAppTemplateRead.model_validate(r) for r in rows])


@router.post("/templates/sync", response_model=TemplateSyncRead, responses=error_responses(404, 422, 502, 503))
def sync_templates(request: Request, session: DbSession, runtime: HubRuntime,
                   principal: tenant_with("integrations:write")) -> TemplateSyncRead:
    """Read every template from Meta now (`GET /{waba_id}/message_templates`, all pages)
    and mirror them (a beat task also does this every few hours)."""
    result = service.sync_templates(session=session, runtime=runtime, tenant_id=principal.tenant_id)
    audit.record(session=session, tenant_id=principal.tenant_id, actor=principal.actor,
                 action="whatsapp.templates_synced", target="whatsapp_cloud", ip=client_ip(request),
                 request_id=request_id(request),
                 details={"synced": result.synced, "added": result.added, "removed": result.removed})
    return TemplateSyncRead(synced=result.synced, added=result.added, updated=result.updated,
                            removed=result.removed, synced_at=result.synced_at)


TemplateName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$", description="a hub template's name")]


@router.get("/template-mappings", response_model=TemplateMappingList)
def list_mappings(session: DbSession, principal: tenant_with("integrations:read")) -> TemplateMappingList:
    """Which WhatsApp template each of the tenant's hub templates goes out as."""
    rows = service.list_mappings(session=session, tenant_id=principal.tenant_id)
    return TemplateMappingList(data=[TemplateMappingRead.model_validate(r) for r in rows])


@router.put("/template-mappings/{template}", response_model=TemplateMappingRead)
def put_mapping(template: TemplateName, mapping_in: TemplateMappingWrite, session: DbSession,
                principal: tenant_with("integrations:write")) -> TemplateMappingRead:
    """Send hub template `template` as this WhatsApp template (its body filled from the
    message's data keys, in order) when WhatsApp needs a template. A 422 when the hub
    template does not exist, a parameter names data the hub template does not declare
    (`required` or `optional`), or the synced WhatsApp template takes another count."""
    declared = templates.get_template(session=session, tenant_id=principal.tenant_id, name=template)
    mapping = service.put_mapping(session=session, tenant_id=principal.tenant_id, template=template,
                                  mapping_in=mapping_in, variables=[*declared.required, *declared.optional])
    return TemplateMappingRead.model_validate(mapping)


@router.delete("/template-mappings/{template}", status_code=status.HTTP_204_NO_CONTENT,
               responses=error_responses(404))
def delete_mapping(template: TemplateName, session: DbSession,
                   principal: tenant_with("integrations:write")) -> Response:
    """Forget a hub template's WhatsApp mapping."""
    service.delete_mapping(session=session, tenant_id=principal.tenant_id, template=template)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


_HANDSHAKE = {
    200: {"description": "the hub.challenge, echoed", "content": {"text/plain": {"schema": {"type": "string"}}}},
    403: {"description": "hub.mode is not subscribe, or hub.verify_token is no integration's"},
}


async def _handshake(request: Request) -> Response:
    runtime = request.app.state.runtime
    challenge = await run_in_threadpool(service.answer_subscription, runtime=runtime,
                                        query=dict(request.query_params))
    if challenge is None:
        return JSONResponse({"error": {"code": "forbidden", "message": "verification failed"}}, status_code=403)
    return PlainTextResponse(challenge)


@webhook_router.get("/whatsapp", response_class=PlainTextResponse, responses=_HANDSHAKE)
async def whatsapp_subscription(request: Request) -> Response:
    """Meta's webhook subscription check: `hub.mode=subscribe`, `hub.verify_token` (one
    integration's verify token) and `hub.challenge`, echoed as text/plain."""
    return await _handshake(request)


@webhook_router.get("/whatsapp_cloud", response_class=PlainTextResponse, responses=_HANDSHAKE)
async def whatsapp_cloud_subscription(request: Request) -> Response:
    """The same handshake on the connector kind's own webhook URL."""
    return await _handshake(request)
