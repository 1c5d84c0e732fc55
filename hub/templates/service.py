"""Templates of a tenant — the shipped defaults merged with its overrides and its own —
and the one way every sender renders one: ``render_message``.

A template is untrusted code (see ``hub.messaging.rendering``): it is checked when
saved (syntax, sandbox rules, every variable declared) and again when rendered (the
data must hold what it requires). Every failure is a 422 whose code names the kind of
problem and whose message names the template, part and variable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.errors import Conflict, HubError, Invalid, NotFound
from hub.messaging import rendering
from hub.messaging.rendering import (
    DEFAULT_TEMPLATE_NAMES,
    RenderedMessage,
    TemplateSource,
    default_template,
    default_variants,
    sample_data,
    validate_template,
)
from hub.messaging.segments import MAX_SMS_SEGMENTS, TooManySegments, check_segments
from hub.templates.models import MessageTemplate
from hub.templates.repository import TemplateRepository
from hub.templates.schemas import (
    LocaleVariants,
    RenderedPart,
    TemplateCreate,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplateRead,
    TemplateWrite,
    WhatsAppTemplateRef,
)
from tenants.models import Tenant

CHANNELS = ("sms", "whatsapp", "email")
# the language Meta names pt-BR templates by
_WHATSAPP_LANGUAGE = {"pt-BR": "pt_BR", "en": "en"}


class ChannelVariantMissing(Invalid):
    """The template has no text for that channel (fallback treats the channel as not possible)."""

    code = "template_channel_missing"


_ERROR_CODES: dict[type[rendering.TemplateError], str] = {
    rendering.MissingVariable: "template_missing_variable",
    rendering.UndeclaredVariable: "template_undeclared_variable",
    rendering.UnsafeTemplate: "template_unsafe",
    rendering.TemplateSyntax: "template_syntax",
    rendering.InvalidValue: "template_invalid_value",
    rendering.UnsafeHeader: "template_invalid_header",
}


def template_error(exc: rendering.TemplateError) -> HubError:
    """The API error for a template that cannot be saved or rendered: 422 with a code per kind."""
    if isinstance(exc, rendering.TemplateNotFound):
        return NotFound(str(exc), code="template_not_found")
    details: dict[str, Any] | None = None
    if isinstance(exc, rendering.MissingVariable | rendering.UndeclaredVariable):
        details = {"variables": list(exc.variables)}
    elif isinstance(exc, rendering.TemplateSyntax):
        details = {"part": exc.part, "line": exc.line}
    elif isinstance(exc, rendering.UnsafeHeader):
        details = {"field": exc.part}
    code = next((code for kind, code in _ERROR_CODES.items() if isinstance(exc, kind)), "template_invalid")
    return Invalid(str(exc), code=code, details=details)


# --- reading ---------------------------------------------------------------------------


def _default_read(name: str) -> TemplateRead:
    required, locales = default_variants(name)
    return TemplateRead(name=name, source="default", required=list(required), optional=sorted(
        set(sample_data(name)) - set(required)), locales={k: LocaleVariants.model_validate(v)
                                                          for k, v in locales.items()})


def _row_read(row: MessageTemplate) -> TemplateRead:
    return TemplateRead(
        name=row.name, source="override" if row.name in DEFAULT_TEMPLATE_NAMES else "custom",
        description=row.description, required=list(row.required), optional=list(row.optional),
        locales={k: LocaleVariants.model_validate(v) for k, v in row.locales.items()},
        whatsapp_template=WhatsAppTemplateRef.model_validate(row.whatsapp_template) if row.whatsapp_template
        else None, updated_at=row.updated_at,
    )


def list_templates(*, session: Session, tenant_id: uuid.UUID) -> list[TemplateRead]:
    """The defaults (or the tenant's override of each) and then the tenant's own, by name."""
    rows = {row.name: row for row in TemplateRepository(session, tenant_id).list()}
    merged = [_row_read(rows[name]) if name in rows else _default_read(name) for name in DEFAULT_TEMPLATE_NAMES]
    merged += [_row_read(row) for name, row in rows.items() if name not in DEFAULT_TEMPLATE_NAMES]
    return merged


def get_template(*, session: Session, tenant_id: uuid.UUID, name: str) -> TemplateRead:
    """One template as the tenant's sends see it; 404 when there is none of that name."""
    row = TemplateRepository(session, tenant_id).get(name)
    if row is not None:
        return _row_read(row)
    if name in DEFAULT_TEMPLATE_NAMES:
        return _default_read(name)
    raise NotFound(f"no template {name!r}", code="template_not_found")


# --- writing ---------------------------------------------------------------------------


def create_template(*, session: Session, tenant_id: uuid.UUID, template_in: TemplateCreate) -> TemplateRead:
    """Add a template of the tenant's own; 409 when the name is taken (a default's included)."""
    repository = TemplateRepository(session, tenant_id)
    if template_in.name in DEFAULT_TEMPLATE_NAMES:
        raise Conflict(f"{template_in.name!r} is a default template: change it with PUT /v1/templates/"
                       f"{template_in.name}", code="template_exists")
    if repository.get(template_in.name) is not None:
        raise Conflict(f"template {template_in.name!r} exists already: replace it with PUT",
                       code="template_exists")
    row = _checked_row(template_in.name, template_in)
    repository.add(row)
    return _row_read(row)


def put_template(*, session: Session, tenant_id: uuid.UUID, name: str, template_in: TemplateWrite) -> TemplateRead:
    """Create or replace the tenant's version of ``name`` (an override when it is a default)."""
    repository = TemplateRepository(session, tenant_id)
    checked = _checked_row(name, template_in)
    row = repository.get(name, for_update=True)
    if row is None:
        row = repository.add(checked)
    else:
        for column in ("description", "required", "optional", "locales", "whatsapp_template"):
            setattr(row, column, getattr(checked, column))
        row.updated_at = utcnow()
        session.flush()
    return _row_read(row)


def delete_template(*, session: Session, tenant_id: uuid.UUID, name: str) -> TemplateRead | None:
    """Drop the tenant's version: an override goes back to the default (returned), a custom
    one is gone (None). 409 for a default never overridden, 404 for an unknown name."""
    repository = TemplateRepository(session, tenant_id)
    row = repository.get(name, for_update=True)
    if row is None:
        if name in DEFAULT_TEMPLATE_NAMES:
            raise Conflict(f"{name!r} is the shipped default, not overridden: nothing to delete",
                           code="template_is_default")
        raise NotFound(f"no template {name!r}", code="template_not_found")
    repository.delete(row)
    return _default_read(name) if name in DEFAULT_TEMPLATE_NAMES else None


def _checked_row(name: str, template_in: TemplateWrite) -> MessageTemplate:
    """The row to store, once every part of every locale passed the sandbox's checks."""
    is_default = name in DEFAULT_TEMPLATE_NAMES
    required = template_in.required
    optional = set(template_in.optional)
    if is_default:
        default_required, _ = default_variants(name)
        required = list(default_required) if required is None else required
        optional |= set(sample_data(name))
    required = list(dict.fromkeys(required or []))
    locales: dict[str, Any] = {}
    try:
        for locale, variants in template_in.locales.items():
            for channel in CHANNELS:
                variant = getattr(variants, channel)
                if variant is None:
                    continue
                parts = variant.model_dump()
                validate_template(TemplateSource(name=name, locale=locale, channel=channel, body=parts["body"],
                                                 subject=parts.get("subject"), html=parts.get("html"),
                                                 required=required), optional=optional)
            locales[locale.replace("_", "-")] = variants.model_dump(exclude_none=True)
        whatsapp = template_in.whatsapp_template
        for index, parameter in enumerate(whatsapp.parameters if whatsapp else []):
            validate_template(TemplateSource(name=f"{name} (whatsapp_template.parameters[{index}])",
                                             locale="pt-BR", channel="whatsapp", body=parameter,
                                             required=required), optional=optional)
    except rendering.TemplateError as exc:
        raise template_error(exc) from None
    now = utcnow()
    return MessageTemplate(
        name=name, description=template_in.description, required=required,
        optional=sorted(set(template_in.optional) - set(required)), locales=locales,
        whatsapp_template=template_in.whatsapp_template.model_dump() if template_in.whatsapp_template else None,
        created_at=now, updated_at=now,
    )


# --- rendering ---------------------------------------------------------------------------


def _language(locale: str) -> str:
    return locale.replace("_", "-").lower().split("-")[0]


def _matching_locale(requested: str, available: list[str]) -> str | None:
    """The exact locale, else one of the same language; None when there is neither."""
    wanted = requested.replace("_", "-").lower()
    for locale in available:
        if locale.lower() == wanted:
            return locale
    return next((locale for locale in sorted(available) if _language(locale) == _language(wanted)), None)


def template_source(*, session: Session, tenant_id: uuid.UUID, template: str, channel: str,
                    locale: str) -> tuple[TemplateSource, dict[str, Any] | None]:
    """The text ``template`` sends on ``channel`` in (or nearest to) ``locale``, and the
    approved WhatsApp template it maps to. 404 for an unknown name; ChannelVariantMissing
    when the template has no text for the channel."""
    row = TemplateRepository(session, tenant_id).get(template)
    is_default = template in DEFAULT_TEMPLATE_NAMES
    if row is None and not is_default:
        raise NotFound(f"no template {template!r}", code="template_not_found")
    if row is not None:
        chosen = _matching_locale(locale, list(row.locales))
        if chosen is None and not is_default:
            # a custom template in other languages only: the tenant's own language, else any
            tenant = session.get(Tenant, tenant_id)
            chosen = _matching_locale(tenant.locale if tenant else rendering.DEFAULT_LOCALE, list(row.locales))
            chosen = chosen or sorted(row.locales)[0]
        parts = row.locales.get(chosen, {}).get(channel) if chosen else None
        if parts:
            source = TemplateSource(name=template, locale=chosen, channel=channel,  # type: ignore[arg-type]
                                    body=parts["body"], subject=parts.get("subject"), html=parts.get("html"),
                                    required=list(row.required))
            return source, row.whatsapp_template
        if not is_default:
            raise ChannelVariantMissing(f"template {template!r} has no {channel} text")
    # the default serves what the tenant did not override
    return default_template(template, locale, channel), row.whatsapp_template if row else None  # type: ignore[arg-type]


def render_message(*, session: Session, tenant_id: uuid.UUID, template: str, channel: str,
                   data: Mapping[str, Any], locale: str | None = None) -> RenderedMessage:
    """Render the tenant's ``template`` for ``channel`` with ``data``, in ``locale`` (default:
    the tenant's) and the tenant's time zone. Raises hub errors: 404 unknown template, 422
    (``template_*`` codes, ``too_many_segments``) for a render that must not be sent.

    The one entry point for every sender (single sends, fallback hops, broadcasts)."""
    return template_renderer(session=session, tenant_id=tenant_id, template=template, channel=channel,
                             locale=locale)(data)


def template_renderer(*, session: Session, tenant_id: uuid.UUID, template: str, channel: str,
                      locale: str | None = None) -> Callable[[Mapping[str, Any]], RenderedMessage]:
    """``render_message`` with the template looked up once: a function of the data alone
    (a broadcast checks thousands of recipients with one lookup per locale).

    ``business_name`` defaults to the tenant's name: every default template greets the
    customer on the business's behalf, and the data may still override it."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    locale = locale or tenant.locale or rendering.DEFAULT_LOCALE
    source, whatsapp = template_source(session=session, tenant_id=tenant_id, template=template, channel=channel,
                                       locale=locale)
    timezone = tenant.timezone or rendering.DEFAULT_TIMEZONE
    defaults = {"business_name": tenant.name}

    def render(data: Mapping[str, Any]) -> RenderedMessage:
        data = {**defaults, **data}
        try:
            rendered = rendering.render(source, data, channel=channel, locale=source.locale,  # type: ignore[arg-type]
                                        timezone=timezone)
            parameters: tuple[str, ...] = ()
            if channel == "whatsapp" and whatsapp:
                parameters = tuple(
                    rendering.render(TemplateSource(name=f"{template} (whatsapp parameter {i})",
                                                    locale=source.locale, channel="whatsapp", body=text, required=[]),
                                     data, channel="whatsapp", locale=source.locale, timezone=timezone).body
                    for i, text in enumerate(whatsapp.get("parameters", [])))
        except rendering.TemplateError as exc:
            raise template_error(exc) from None
        if channel == "sms":
            try:
                check_segments(rendered.body, MAX_SMS_SEGMENTS)
            except TooManySegments as exc:
                raise Invalid(f"template {template!r} renders an SMS of {exc.count.segments} segments; at most "
                              f"{exc.max_segments} may go", code="too_many_segments",
                              details={"segments": exc.count.segments, "encoding": exc.count.encoding,
                                       "max_segments": exc.max_segments}) from None
        rendered = replace(rendered, locale=source.locale)
        if channel == "whatsapp" and whatsapp:
            rendered = replace(rendered, template_name=whatsapp["name"],
                               template_language=whatsapp.get("language")
                               or _WHATSAPP_LANGUAGE.get(source.locale, source.locale.replace("-", "_")),
                               template_parameters=parameters)
        return rendered

    return render


def preview_template(*, session: Session, tenant_id: uuid.UUID, name: str,
                     preview_in: TemplatePreviewRequest) -> TemplatePreview:
    """Render ``name`` with sample data, for one channel or every channel it has."""
    read = get_template(session=session, tenant_id=tenant_id, name=name)
    data = preview_in.data
    if data is None:
        if name not in DEFAULT_TEMPLATE_NAMES:
            raise Invalid("data: a template of your own needs sample data to preview", code="preview_needs_data")
        data = sample_data(name)
    if preview_in.channel:
        channels = [preview_in.channel]
    else:
        present = {c for variants in read.locales.values() for c in CHANNELS if getattr(variants, c) is not None}
        channels = [c for c in CHANNELS if c in present or name in DEFAULT_TEMPLATE_NAMES]
    parts = []
    for channel in channels:
        rendered = render_message(session=session, tenant_id=tenant_id, template=name, channel=channel, data=data,
                                  locale=preview_in.locale)
        parts.append(RenderedPart(
            channel=channel, locale=rendered.locale, body=rendered.body, subject=rendered.subject,
            html=rendered.html, segments=rendered.segments.segments if rendered.segments else None,
            encoding=rendered.segments.encoding if rendered.segments else None,
            whatsapp_template={"name": rendered.template_name, "language": rendered.template_language,
                               "parameters": list(rendered.template_parameters)} if rendered.template_name
            else None,
        ))
    return TemplatePreview(name=name, rendered=parts)
