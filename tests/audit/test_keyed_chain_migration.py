"""Migration 0021 keeps the rows of the plain SHA-256 chain as they are, and its downgrade
leaves a chain the code before it verifies."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from hub.audit import service as audit
from hub.audit.checkpoints import take_checkpoints
from hub.audit.models import GENESIS_HASH, AuditEvent
from hub.db import make_engine, utcnow
from hub.migrate import downgrade, upgrade
from hub.runtime import build_runtime
from tests.audit.test_audit import record_some

PLAIN_EVENTS = sa.table(  # audit_events as the code before 0021 had it
    "audit_events", *(sa.column(c.name, c.type) for c in AuditEvent.__table__.c if c.name != "key_id"))


def write_plain_chain(url: str, chain: str, n: int) -> None:
    """Rows as the code before 0021 wrote them: hash = sha256(prev_hash + canonical row)."""
    engine = make_engine(url)
    assert "key_id" not in {c["name"] for c in sa.inspect(engine).get_columns("audit_events")}
    prev = GENESIS_HASH
    with engine.begin() as conn:
        for seq in range(1, n + 1):
            row = AuditEvent(id=uuid.uuid4(), chain=chain, seq=seq, tenant_id=uuid.UUID(chain), occurred_at=utcnow(),
                             actor="before", action="thing.done", target=str(seq), outcome="success", ip=None,
                             request_id=None, details={"seq": seq, "note": "olá"}, prev_hash=prev)
            row.hash = audit.legacy_hash(prev, row)
            conn.execute(PLAIN_EVENTS.insert().values({c.name: getattr(row, c.name) for c in PLAIN_EVENTS.c}))
            prev = row.hash
        conn.execute(sa.text("INSERT INTO audit_chain_heads (chain, last_seq, last_hash) VALUES (:c, :n, :h)"),
                     {"c": chain, "n": n, "h": prev})
    engine.dispose()


def plain_chain_holds(url: str, chain: str) -> bool:
    """What `hub audit verify` checked before 0021."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(PLAIN_EVENTS).where(PLAIN_EVENTS.c.chain == chain)
                            .order_by(PLAIN_EVENTS.c.seq)).all()
        head = conn.execute(sa.text("SELECT last_hash FROM audit_chain_heads WHERE chain = :c"), {"c": chain}).scalar()
    engine.dispose()
    prev = GENESIS_HASH
    for row in rows:
        event = AuditEvent(**row._mapping)
        if event.prev_hash != prev or audit.legacy_hash(prev, event) != event.hash:
            return False
        prev = event.hash
    return len(rows) > 0 and head == prev


def test_old_rows_stay_plain_new_rows_are_keyed_and_downgrade_rehashes_them(database_url, settings):
    chain = str(uuid.uuid4())
    downgrade(database_url, "0023")
    write_plain_chain(database_url, chain, 3)
    upgrade(database_url)

    runtime = build_runtime(settings)
    try:
        record_some(runtime, uuid.UUID(chain), 2)
        with runtime.session_factory() as s, s.begin():
            [cp] = take_checkpoints(session=s, chains=[chain])
        assert cp.legacy_seq == 3 and cp.seq == 5
        with runtime.session_factory() as s:
            assert audit.verify_chain(session=s, chain=chain).ok
            key_ids = list(s.scalars(sa.select(AuditEvent.key_id).where(AuditEvent.chain == chain)
                                     .order_by(AuditEvent.seq)))
        assert key_ids[:3] == [None] * 3 and None not in key_ids[3:]
        assert not plain_chain_holds(database_url, chain)  # the keyed rows are not plain SHA-256
    finally:
        runtime.close()

    downgrade(database_url, "0023")
    assert plain_chain_holds(database_url, chain)
    upgrade(database_url)
    runtime = build_runtime(settings)
    try:
        with runtime.session_factory() as s:
            verdict = audit.verify_chain(session=s, chain=chain)
        assert verdict.ok and verdict.checked == 5
    finally:
        runtime.close()
