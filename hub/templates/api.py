"""Templates: the shipped defaults, the tenant's overrides and its own. The tenant is the token's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi import status as http

from hub.audit import service as audit
from hub.auth.deps import client_ip, request_id, tenant_with
from hub.deps import DbSession
from hub.errors import AUTHENTICATED_ERRORS, error_responses
from hub.templates import service
from hub.templates.schemas import (
    TemplateCreate,
    TemplateList,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplateRead,
    TemplateWrite,
)

router = APIRouter(prefix="/v1/templates", tags=["templates"], responses=AUTHENTICATED_ERRORS)

NamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="the template's name")]


def _audit(session, request: Request, principal, action: str, name: str) -> None:
    audit.record(session=session, tenant_id=principal.tenant_id, actor=principal.actor, action=action, target=name,
                 ip=client_ip(request), request_id=request_id(request))


@router.get("", response_model=TemplateList)
def list_templates(session: DbSession, principal: tenant_with("messages:read")) -> TemplateList:
    """The eight defaults (``source: default``, or ``override`` when the tenant changed one),
    then the tenant's own (``custom``)."""
    return TemplateList(data=service.list_templates(session=session, tenant_id=principal.tenant_id))


@router.get("/{name}", response_model=TemplateRead)
def get_template(name: NamePath, session: DbSession, principal: tenant_with("messages:read")) -> TemplateRead:
    """One template, as the tenant's sends use it."""
    return service.get_template(session=session, tenant_id=principal.tenant_id, name=name)


@router.post("", response_model=TemplateRead, status_code=http.HTTP_201_CREATED, responses=error_responses(409))
def create_template(template_in: TemplateCreate, request: Request, session: DbSession,
                    principal: tenant_with("messages:write")) -> TemplateRead:
    """Add a template of your own. Every part is checked before it is saved: syntax, the
    sandbox's rules (no private attributes, method calls, includes …), and every variable
    it reads declared in ``required`` or ``optional`` — 422 naming the problem otherwise.
    409 when the name exists (the defaults' names included: PUT overrides those)."""
    read = service.create_template(session=session, tenant_id=principal.tenant_id, template_in=template_in)
    _audit(session, request, principal, "template.created", read.name)
    return read


@router.put("/{name}", response_model=TemplateRead)
def put_template(name: NamePath, template_in: TemplateWrite, request: Request, session: DbSession,
                 principal: tenant_with("messages:write")) -> TemplateRead:
    """Create or replace the tenant's version of ``name``: for a default, an override (a
    channel it leaves out still uses the default's text). Checked as on POST."""
    read = service.put_template(session=session, tenant_id=principal.tenant_id, name=name, template_in=template_in)
    _audit(session, request, principal, "template.replaced", name)
    return read


@router.delete("/{name}", status_code=http.HTTP_204_NO_CONTENT, responses=error_responses(409))
def delete_template(name: NamePath, request: Request, session: DbSession,
                    principal: tenant_with("messages:write")) -> Response:
    """Drop the tenant's version: an override goes back to the default, a custom template is
    gone. 409 ``template_is_default`` for a default that was never overridden."""
    service.delete_template(session=session, tenant_id=principal.tenant_id, name=name)
    _audit(session, request, principal, "template.deleted", name)
    return Response(status_code=http.HTTP_204_NO_CONTENT)


@router.post("/{name}/preview", response_model=TemplatePreview)
def preview_template(name: NamePath, preview_in: TemplatePreviewRequest, session: DbSession,
                     principal: tenant_with("messages:read")) -> TemplatePreview:
    """Render with sample data (a default's own sample when ``data`` is omitted), in ``locale``
    (default: the tenant's), for ``channel`` or every channel: the parts and, for SMS, the
    segment count. 422 when the data misses a required variable or the SMS is too long."""
    return service.preview_template(session=session, tenant_id=principal.tenant_id, name=name,
                                    preview_in=preview_in)
