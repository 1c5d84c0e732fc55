"""Signed checkpoints of the audit chains' heads.

A keyed chain stops anyone without the master keys from editing a row, but not from
cutting its tail: delete the last rows, set the head back, and what remains is a valid
chain. A checkpoint is a statement "chain C had N rows ending in hash H at time T",
signed with an Ed25519 key derived from the master key (hub.audit.keys): the database
never holds that key, so checkpoints cannot be forged, only deleted, and copies kept
outside the database (the log stream, ``HUB_AUDIT_CHECKPOINT_FILE``, the output of
``hub audit checkpoint``) cannot be deleted by someone who only reaches the database.
``hub audit verify --checkpoint FILE`` then proves each chain still reaches every
checkpoint it was seen at, with the same hash.

The beat signs a checkpoint of every chain whose head moved, every minute; the table
keeps the newest per chain.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hub.audit.keys import AuditKeys, audit_keys
from hub.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from hub.db import insert_ignore, utcnow
from hub.errors import Conflict

log = structlog.get_logger("hub.audit")

FORMAT = 1


class CheckpointFileError(ValueError):
    """A checkpoint file does not parse; the message names the line."""


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint, as exported (JSON) and as stored."""

    chain: str
    seq: int
    hash: str
    legacy_seq: int
    signed_at: str  # ISO 8601, UTC
    key_id: str
    signature: str
    public_key: str | None = None  # informative: a verifier derives it from the key id
    v: int = FORMAT

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return json.dumps({"v": self.v, "chain": self.chain, "seq": self.seq, "hash": self.hash,
                           "legacy_seq": self.legacy_seq, "signed_at": self.signed_at, "key_id": self.key_id},
                          sort_keys=True, separators=(",", ":")).encode()

    def problem(self, keys: AuditKeys) -> str | None:
        """Why this checkpoint cannot be trusted, or None."""
        if self.v != FORMAT:
            return f"unknown checkpoint format {self.v!r}"
        if not keys.knows(self.key_id):
            return f"signed with master key {self.key_id!r}, which is not in HUB_MASTER_KEYS"
        if self.public_key is not None and self.public_key != keys.public_key(self.key_id):
            return "its public key is not the hub's"
        if not keys.signature_holds(self.key_id, self.payload(), self.signature):
            return "signature does not verify"
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def of(cls, row: AuditCheckpoint) -> Checkpoint:
        return cls(chain=row.chain, seq=row.seq, hash=row.hash, legacy_seq=row.legacy_seq,
                   signed_at=_iso(row.signed_at), key_id=row.key_id, signature=row.signature)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            return cls(chain=str(data["chain"]), seq=int(data["seq"]), hash=str(data["hash"]),
                       legacy_seq=int(data["legacy_seq"]), signed_at=str(data["signed_at"]),
                       key_id=str(data["key_id"]), signature=str(data["signature"]),
                       public_key=data.get("public_key"), v=int(data.get("v", FORMAT)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a checkpoint ({exc.__class__.__name__}: {exc})") from None


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")


def sign(keys: AuditKeys, *, chain: str, seq: int, hash: str, legacy_seq: int, at: datetime) -> Checkpoint:
    unsigned = Checkpoint(chain=chain, seq=seq, hash=hash, legacy_seq=legacy_seq, signed_at=_iso(at),
                          key_id=keys.active_id, signature="")
    key_id, signature = keys.sign(unsigned.payload())
    return Checkpoint(chain=chain, seq=seq, hash=hash, legacy_seq=legacy_seq, signed_at=unsigned.signed_at,
                      key_id=key_id, signature=signature, public_key=keys.public_key(key_id))


def _head_problem(session: Session, keys: AuditKeys, head: AuditChainHead,
                  latest: AuditCheckpoint | None) -> str | None:
    """Why the head must not be signed: it is not a row its writer sealed, or the chain
    moved under the newest checkpoint. (The full walk is `hub audit verify`'s job.)"""
    from hub.audit.service import row_problem

    row = session.scalar(select(AuditEvent).where(AuditEvent.chain == head.chain, AuditEvent.seq == head.last_seq))
    if row is None or row.hash != head.last_hash:
        return "the head does not match the chain's last row"
    if (problem := row_problem(keys, row, row.prev_hash, head.legacy_seq)) is not None:
        return problem
    if latest is not None:
        previous = Checkpoint.of(latest)
        if previous.problem(keys) is None:
            if previous.legacy_seq != head.legacy_seq:
                return "the chain's unkeyed prefix moved since the last checkpoint"
            if latest.seq > head.last_seq:
                return "the head went back behind the last checkpoint"
    return None


def take_checkpoints(*, session: Session, chains: list[str] | None = None) -> list[Checkpoint]:
    """Sign a checkpoint of every chain (or of ``chains``) whose head moved since its
    newest one, store it, and return it. A head that looks tampered with is not signed:
    it is logged, and `hub audit verify` names the row."""
    keys = audit_keys(session)
    stmt = (select(AuditChainHead, AuditCheckpoint)
            .outerjoin(AuditCheckpoint, AuditCheckpoint.chain == AuditChainHead.chain)
            .where(AuditChainHead.last_seq > 0,
                   or_(AuditCheckpoint.seq.is_(None), AuditCheckpoint.seq != AuditChainHead.last_seq))
            .order_by(AuditChainHead.chain))
    if chains is not None:
        stmt = stmt.where(AuditChainHead.chain.in_(chains))
    made = []
    for head, latest in session.execute(stmt).all():
        if (problem := _head_problem(session, keys, head, latest)) is not None:
            log.error("audit chain head not checkpointed", chain=head.chain, seq=head.last_seq, reason=problem)
            continue
        cp = sign(keys, chain=head.chain, seq=head.last_seq, hash=head.last_hash, legacy_seq=head.legacy_seq,
                  at=utcnow())
        values = {"seq": cp.seq, "hash": cp.hash, "legacy_seq": cp.legacy_seq,
                  "signed_at": datetime.fromisoformat(cp.signed_at), "key_id": cp.key_id, "signature": cp.signature}
        if not insert_ignore(session, AuditCheckpoint, {"chain": cp.chain, **values}, conflict=["chain"]):
            # another checkpointer may have signed a newer head meanwhile: never go back
            session.execute(update(AuditCheckpoint)
                            .where(AuditCheckpoint.chain == cp.chain, AuditCheckpoint.seq < cp.seq).values(**values))
        made.append(cp)
    session.flush()
    return made


def current_checkpoint(*, session: Session, chain: str) -> Checkpoint | None:
    """A checkpoint of the chain's head signed now (not stored), for a verifier that
    asks; None when the chain has no rows. A head that looks tampered with is refused."""
    keys = audit_keys(session)
    head = session.get(AuditChainHead, chain)
    if head is None or head.last_seq == 0:
        return None
    if (problem := _head_problem(session, keys, head, session.get(AuditCheckpoint, chain))) is not None:
        log.error("audit chain head not checkpointed", chain=chain, seq=head.last_seq, reason=problem)
        raise Conflict("the audit chain's head does not verify; an operator should run `hub audit verify`",
                       code="audit_chain_broken")
    return sign(keys, chain=chain, seq=head.last_seq, hash=head.last_hash, legacy_seq=head.legacy_seq,
                at=utcnow())


def latest_checkpoints(*, session: Session, chains: list[str] | None = None) -> list[Checkpoint]:
    """The newest stored checkpoint of each chain (with its public key), by chain."""
    keys = audit_keys(session)
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.chain)
    if chains is not None:
        stmt = stmt.where(AuditCheckpoint.chain.in_(chains))
    return [sign_info(keys, Checkpoint.of(row)) for row in session.scalars(stmt)]


def sign_info(keys: AuditKeys, cp: Checkpoint) -> Checkpoint:
    """``cp`` with the public key that checks it (for verifiers without the master keys)."""
    return Checkpoint(**{**asdict(cp), "public_key": keys.public_key(cp.key_id)})


def export(checkpoints: list[Checkpoint], path: Path | None) -> None:
    """Copy checkpoints out of the database: to the log stream always, and appended as
    JSON lines to ``path`` when one is set (HUB_AUDIT_CHECKPOINT_FILE)."""
    for cp in checkpoints:
        # one JSON string, as the file holds it: a field named "signature" would be redacted
        log.info("audit checkpoint", checkpoint=cp.to_json())
    if path is not None and checkpoints:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.writelines(cp.to_json() + "\n" for cp in checkpoints)


def read_checkpoint_file(text: str) -> list[Checkpoint]:
    """Checkpoints from a file: one JSON object, a JSON list, or JSON lines."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        data = json.loads(stripped)
        items = data if isinstance(data, list) else [data]
        return [Checkpoint.from_dict(item) for item in items]
    except json.JSONDecodeError:
        pass
    except ValueError as exc:
        raise CheckpointFileError(str(exc)) from None
    checkpoints = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
            checkpoints.append(Checkpoint.from_dict(item))
        except ValueError as exc:  # JSONDecodeError is one
            raise CheckpointFileError(f"line {number}: {exc}") from None
    return checkpoints
