"""Request dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from hub.runtime import Runtime
from hub.settings import Settings
from tenants.vault import Vault


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_settings(request: Request) -> Settings:
    return request.app.state.runtime.settings


def get_vault(request: Request) -> Vault:
    return request.app.state.runtime.vault


def get_db(request: Request) -> Iterator[Session]:
    """One session per request, committed once when the route returns (before the
    response is sent, so a 2xx means it is durable), rolled back on any error."""
    with request.app.state.runtime.session_factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


HubRuntime = Annotated[Runtime, Depends(get_runtime)]
HubSettings = Annotated[Settings, Depends(get_settings)]
VaultDep = Annotated[Vault, Depends(get_vault)]
DbSession = Annotated[Session, Depends(get_db, scope="function")]
