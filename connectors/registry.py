"""kind -> connector class. Built-ins are listed here; third parties register theirs
under the entry-point group ``integrations_hub.connectors``.

Nothing here touches the database. A connector that fails to load fails loudly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from connectors.base import Connector

ENTRY_POINT_GROUP = "integrations_hub.connectors"

# "module:Class" of every built-in connector; a module is imported only when the
# registry is first loaded, never at import time of this module.
BUILTIN_CONNECTORS: list[str] = [
    "connectors.whatsapp_cloud:WhatsAppCloudConnector",
    "connectors.smtp:SmtpConnector",
    "connectors.twilio:TwilioConnector",
    "connectors.google_calendar:GoogleCalendarConnector",
]


class ConnectorLoadError(RuntimeError):
    pass


class UnknownConnector(KeyError):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind

    def __str__(self) -> str:
        return f"no connector registered for kind {self.kind!r}"


def _import(ref: str) -> type[Connector]:
    module_name, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConnectorLoadError(f"cannot load connector {ref!r}: {exc}") from exc
    return obj


class ConnectorRegistry:
    """An immutable map of kind -> connector class."""

    def __init__(self, connectors: Iterable[type[Connector]]) -> None:
        self._by_kind: dict[str, type[Connector]] = {}
        for connector in connectors:
            if not (isinstance(connector, type) and issubclass(connector, Connector)):
                raise ConnectorLoadError(f"{connector!r} is not a Connector subclass")
            kind = getattr(connector, "kind", None)
            if not kind:
                raise ConnectorLoadError(f"{connector.__name__} declares no kind")
            if kind in self._by_kind and self._by_kind[kind] is not connector:
                raise ConnectorLoadError(
                    f"kind {kind!r} registered twice: {self._by_kind[kind].__name__} and {connector.__name__}"
                )
            self._by_kind[kind] = connector

    def get(self, kind: str) -> type[Connector]:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise UnknownConnector(kind) from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def __iter__(self):
        return iter(self._by_kind.values())


def load_registry(*, include_entry_points: bool = True) -> ConnectorRegistry:
    """The built-in connectors plus every installed third-party one."""
    found: list[type[Connector]] = [_import(ref) for ref in BUILTIN_CONNECTORS]
    if include_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                found.append(ep.load())
            except Exception as exc:  # an entry point can raise anything on import
                raise ConnectorLoadError(f"cannot load connector entry point {ep.name!r}: {exc}") from exc
    return ConnectorRegistry(found)
