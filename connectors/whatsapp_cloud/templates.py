"""Message templates as Meta lists them (``GET /{version}/{waba_id}/message_templates``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Positional ``{{1}}`` and named ``{{first_name}}`` placeholders (``parameter_format`` POSITIONAL/NAMED).
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class ProviderTemplate:
    """One approved-or-not template in one language, as the provider holds it.

    ``body_parameter_count`` is what a send must supply as body parameters: Meta
    rejects any other count with error 132000.
    """

    name: str
    language: str
    status: str
    category: str
    body_parameter_count: int
    components: list[dict[str, Any]] = field(default_factory=list)
    provider_template_id: str | None = None


def body_parameter_count(components: Sequence[Mapping[str, Any]]) -> int:
    """Distinct placeholders in the BODY component (a repeated ``{{1}}`` is one parameter)."""
    for component in components:
        if str(component.get("type", "")).upper() == "BODY":
            return len(set(_PLACEHOLDER.findall(str(component.get("text") or ""))))
    return 0


def body_parameter_names(components: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The BODY's named placeholders in order of first appearance (``{{first_name}}``),
    for a template whose ``parameter_format`` is NAMED; empty for a POSITIONAL one
    (``{{1}}``), which is sent by position alone."""
    for component in components:
        if str(component.get("type", "")).upper() == "BODY":
            names = dict.fromkeys(_PLACEHOLDER.findall(str(component.get("text") or "")))
            return tuple(names) if any(not name.isdigit() for name in names) else ()
    return ()


def parameter_counts(components: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Placeholders a send must fill per component: ``{"header", "body", "buttons"}``
    (a text header's ``{{1}}``, the body's distinct placeholders, URL buttons' suffixes)."""
    counts = {"header": 0, "body": body_parameter_count(components), "buttons": 0}
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER" and str(component.get("format", "TEXT")).upper() == "TEXT":
            counts["header"] = len(set(_PLACEHOLDER.findall(str(component.get("text") or ""))))
        elif kind == "BUTTONS":
            for button in component.get("buttons") or []:
                if isinstance(button, Mapping):
                    counts["buttons"] += len(set(_PLACEHOLDER.findall(str(button.get("url") or ""))))
    return counts


def template_from_graph(item: Mapping[str, Any]) -> ProviderTemplate:
    """Build a ``ProviderTemplate`` from one element of the Graph ``data`` array."""
    raw_components = item.get("components")
    components = [dict(c) for c in raw_components if isinstance(c, Mapping)] if isinstance(raw_components, list) else []
    return ProviderTemplate(
        name=str(item.get("name") or ""),
        language=str(item.get("language") or ""),
        status=str(item.get("status") or ""),
        category=str(item.get("category") or ""),
        body_parameter_count=body_parameter_count(components),
        components=components,
        provider_template_id=str(item["id"]) if item.get("id") is not None else None,
    )
