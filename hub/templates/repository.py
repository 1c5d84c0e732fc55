"""Queries of a tenant's templates, tenant-filtered here and nowhere else."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.templates.models import MessageTemplate


class TemplateRepository:
    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def get(self, name: str, *, for_update: bool = False) -> MessageTemplate | None:
        stmt = select(MessageTemplate).where(MessageTemplate.tenant_id == self.tenant_id,
                                             MessageTemplate.name == name)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def list(self) -> list[MessageTemplate]:
        return list(self.session.scalars(
            select(MessageTemplate).where(MessageTemplate.tenant_id == self.tenant_id).order_by(MessageTemplate.name)))

    def add(self, template: MessageTemplate) -> MessageTemplate:
        template.tenant_id = self.tenant_id
        self.session.add(template)
        self.session.flush()
        return template

    def delete(self, template: MessageTemplate) -> None:
        self.session.delete(template)
        self.session.flush()
