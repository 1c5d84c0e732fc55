"""What every ``hub`` command shares: clear failures, settings, a runtime, JSON output.
(No Typer app here, so feature command modules import it without a cycle.)"""

from __future__ import annotations

import json
from typing import NoReturn

import typer

from hub.settings import Settings, SettingsError


def fail(*lines: str, code: int = 2) -> NoReturn:
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def load_settings(*, for_service: bool = True) -> Settings:
    """Settings, or exit 2 with one clear line per problem (never a traceback)."""
    try:
        settings = Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        errors = getattr(exc, "errors", lambda: [])()
        fail(*[f"HUB_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in errors] or [str(exc)])
    if for_service and (problems := settings.production_problems()):
        fail(*problems)
    from hub.logs import configure_logging

    configure_logging(settings.log_level)
    return settings


def runtime_or_exit(settings: Settings):
    from hub.runtime import build_runtime

    try:
        return build_runtime(settings)
    except SettingsError as exc:
        fail(str(exc))


def _print(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))  # Clínica, not Cl\u00ednica
