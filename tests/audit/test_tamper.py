"""Someone with write access to the database, but not the master keys, rewrites the audit
trail as an attacker would (straight SQL on the tables), and `hub audit verify` names it.

Each test reproduces one attack of issue 18 item 6: on the plain SHA-256 chain before the
chain was keyed and checkpointed, the edited-and-rehashed chain and the cut tail with a
rewound head both verified.
"""

from __future__ import annotations

import io
import json
import os
import random
import threading
import uuid

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from hub.audit import service as audit
from hub.audit.checkpoints import Checkpoint, export, read_checkpoint_file, take_checkpoints
from hub.audit.keys import AuditKeys, audit_keys
from hub.audit.models import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditEvent
from hub.cli import app as cli
from hub.logs import configure_logging
from hub.runtime import build_runtime
from hub.settings import MasterKey, Settings, new_master_key_entry
from tests.audit.test_audit import record_some
from tests.support import bearer, create_client, create_tenant, get_token


def record(runtime, chain, n):
    record_some(runtime, uuid.UUID(chain), n)


def unkeyed(prev, row):
    """An attacker's rehash: the row pretends to be from before the chain was keyed."""
    row.key_id = None
    return audit.legacy_hash(prev, row)


def verify(runtime, chain, checkpoints=()):
    with runtime.session_factory() as s:
        return audit.verify_chain(session=s, chain=chain, checkpoints=checkpoints)


def checkpoint(runtime, chain) -> Checkpoint:
    with runtime.session_factory() as s, s.begin():
        take_checkpoints(session=s, chains=[chain])
    with runtime.session_factory() as s:
        return Checkpoint.of(s.get(AuditCheckpoint, chain))


def rewrite_from(runtime, chain, seq, *, edit, rehash):
    """Edit row ``seq`` and recompute every later link and hash with ``rehash(prev, row)``,
    then move the head to the new last hash: the rewrite a plain hash chain cannot see."""
    with runtime.session_factory() as s, s.begin():
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.chain == chain).order_by(AuditEvent.seq)))
        prev = GENESIS_HASH
        for row in rows:
            if row.seq == seq:
                edit(row)
            if row.seq >= seq:
                row.prev_hash = prev
                row.hash = rehash(prev, row)
            prev = row.hash
        s.execute(update(AuditChainHead).where(AuditChainHead.chain == chain).values(last_hash=prev))


def cut_tail(runtime, chain, keep):
    """Delete every row after ``keep`` and rewind the head to it, checkpoints and all."""
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE chain = :c AND seq > :k"), {"c": chain, "k": keep})
        last = conn.execute(text("SELECT hash FROM audit_events WHERE chain = :c AND seq = :k"),
                            {"c": chain, "k": keep}).scalar()
        conn.execute(text("UPDATE audit_chain_heads SET last_seq = :k, last_hash = :h WHERE chain = :c"),
                     {"c": chain, "k": keep, "h": last})
        conn.execute(text("DELETE FROM audit_checkpoints WHERE chain = :c"), {"c": chain})


def with_keys(settings: Settings, master_keys: str):
    """Another process of the same deployment, with another HUB_MASTER_KEYS."""
    return build_runtime(Settings(**{**settings.model_dump(), "master_keys": master_keys}))


class TestEditedRows:
    def test_an_edit_rehashed_with_plain_sha256_is_named(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 6)
        rewrite_from(runtime, chain, 3, edit=lambda row: setattr(row, "actor", "someone-else"),
                     rehash=audit.legacy_hash)
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == 3 and "content" in verdict.reason

    def test_an_edit_rehashed_as_unkeyed_rows_is_named(self, runtime):
        # the rows pretend to be from before the chain was keyed
        chain = str(create_tenant(runtime))
        record(runtime, chain, 6)

        rewrite_from(runtime, chain, 1, edit=lambda row: setattr(row, "target", "nothing to see"), rehash=unkeyed)
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == 1 and "not keyed" in verdict.reason

    def test_an_edit_rehashed_with_a_wrong_key_is_named(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 6)
        with runtime.session_factory() as s:
            active = audit_keys(s).active_id
        guessed = AuditKeys((MasterKey(active, os.urandom(32)),))  # the right id, not the key
        seq = random.randint(1, 6)
        rewrite_from(runtime, chain, seq,
                     edit=lambda row: setattr(row, "details", {**row.details, "note": "rewritten"}),
                     rehash=lambda prev, row: audit.chain_hash(guessed, prev, row))
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == seq and "content" in verdict.reason

    def test_a_row_moved_to_a_key_the_hub_does_not_hold_is_named(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 4)
        attacker = AuditKeys((MasterKey("attacker", os.urandom(32)),))

        def rekey(prev, row):
            row.key_id = "attacker"
            return audit.chain_hash(attacker, prev, row)

        rewrite_from(runtime, chain, 2, edit=lambda row: setattr(row, "outcome", "failure"), rehash=rekey)
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == 2 and "'attacker'" in verdict.reason


class TestRemovedRows:
    def test_a_cut_tail_with_its_head_rewound_fails_against_an_earlier_checkpoint(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 5)
        kept_elsewhere = checkpoint(runtime, chain)
        assert kept_elsewhere.seq == 5
        cut_tail(runtime, chain, keep=4)
        assert verify(runtime, chain).ok  # what the database alone can still tell
        verdict = verify(runtime, chain, [kept_elsewhere])
        assert not verdict.ok and verdict.broken_seq == 5 and "removed" in verdict.reason
        assert "seq=5" in verdict.reason

    def test_a_cut_tail_is_caught_by_the_databases_own_checkpoint_if_left(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 5)
        checkpoint(runtime, chain)
        with runtime.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events WHERE chain = :c AND seq = 5"), {"c": chain})
            conn.execute(text("UPDATE audit_chain_heads SET last_seq = 4, last_hash = "
                              "(SELECT hash FROM audit_events WHERE chain = :c AND seq = 4) WHERE chain = :c"),
                         {"c": chain})
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == 5

    def test_a_deleted_middle_row_is_named_even_when_the_rest_is_renumbered(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 6)
        with runtime.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events WHERE chain = :c AND seq = 3"), {"c": chain})
        assert verify(runtime, chain).broken_seq == 3
        # renumbering and relinking the rest needs new hashes, which need the key
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET seq = seq - 1 WHERE chain = :c AND seq > 3"), {"c": chain})
        rewrite_from(runtime, chain, 3, edit=lambda row: None, rehash=audit.legacy_hash)
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_chain_heads SET last_seq = 5 WHERE chain = :c"), {"c": chain})
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == 3

    def test_a_forged_or_replayed_checkpoint_is_named(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 3)
        real = checkpoint(runtime, chain)
        forged = Checkpoint(**{**real.__dict__, "seq": 2})
        verdict = verify(runtime, chain, [forged])
        assert not verdict.ok and "signature" in verdict.reason
        other = str(create_tenant(runtime, "other"))
        record(runtime, other, 3)
        moved = Checkpoint(**{**checkpoint(runtime, other).__dict__, "chain": chain})  # another chain's
        assert "signature" in verify(runtime, chain, [moved]).reason


class TestIntactChains:
    def test_an_untouched_chain_verifies_against_its_checkpoints(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 3)
        first = checkpoint(runtime, chain)
        record(runtime, chain, 4)
        second = checkpoint(runtime, chain)
        verdict = verify(runtime, chain, [first, second])
        assert verdict.ok and verdict.checked == 7 and verdict.checkpoint_seq == 7

    def test_a_chain_growing_while_it_is_verified_verifies(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 5)
        checkpoint(runtime, chain)
        writer = threading.Thread(target=lambda: [record(runtime, chain, 1) for _ in range(60)])
        writer.start()
        verdicts = []
        while writer.is_alive() or not verdicts:
            verdicts.append(verify(runtime, chain))
        writer.join()
        assert all(v.ok for v in verdicts), [v for v in verdicts if not v.ok][:1]
        assert verify(runtime, chain).checked == 65

    def test_rows_and_checkpoints_verify_across_a_master_key_rotation(self, runtime, settings):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 3)
        before = checkpoint(runtime, chain)
        old = settings.master_keys.get_secret_value()
        rotated = with_keys(settings, f"{new_master_key_entry()},{old}")
        try:
            record(rotated, chain, 3)
            after = checkpoint(rotated, chain)
            with rotated.session_factory() as s:
                key_ids = list(s.scalars(select(AuditEvent.key_id).where(AuditEvent.chain == chain)
                                         .order_by(AuditEvent.seq)))
                new_id = audit_keys(s).active_id
            assert key_ids[:3] == [before.key_id] * 3 and key_ids[3:] == [new_id] * 3 != key_ids[:3]
            assert after.key_id == new_id
            assert verify(rotated, chain, [before, after]).ok
        finally:
            rotated.close()
        # the old master key removed too early: its rows can no longer be proved
        dropped = with_keys(settings, f"{new_master_key_entry()}")
        try:
            verdict = verify(dropped, chain)
            assert not verdict.ok and "not in HUB_MASTER_KEYS" in verdict.reason
        finally:
            dropped.close()


class TestRowsFromBeforeTheKeyedChain:
    """Rows written before migration 0021 keep their plain SHA-256 hashes."""

    def legacy_chain(self, runtime, n):
        chain = str(create_tenant(runtime))
        record(runtime, chain, n)
        rewrite_from(runtime, chain, 1, edit=lambda row: None, rehash=unkeyed)
        with runtime.engine.begin() as conn:  # what the migration sets
            conn.execute(text("UPDATE audit_chain_heads SET legacy_seq = last_seq WHERE chain = :c"), {"c": chain})
        return chain

    def test_an_unkeyed_prefix_verifies_and_keyed_rows_follow_it(self, runtime):
        chain = self.legacy_chain(runtime, 3)
        record(runtime, chain, 2)
        cp = checkpoint(runtime, chain)
        assert cp.legacy_seq == 3
        assert verify(runtime, chain, [cp]).ok

    def test_an_edit_in_the_unkeyed_prefix_is_caught_by_the_keyed_row_after_it(self, runtime):
        chain = self.legacy_chain(runtime, 3)
        record(runtime, chain, 2)
        rewrite_from(runtime, chain, 2, edit=lambda row: setattr(row, "actor", "x"), rehash=audit.legacy_hash)
        verdict = verify(runtime, chain)
        assert not verdict.ok and verdict.broken_seq == 4

    def test_moving_the_unkeyed_prefix_forward_is_named(self, runtime):
        chain = self.legacy_chain(runtime, 2)
        record(runtime, chain, 3)
        cp = checkpoint(runtime, chain)
        rewrite_from(runtime, chain, 3, edit=lambda row: setattr(row, "actor", "x"), rehash=unkeyed)
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_chain_heads SET legacy_seq = 5 WHERE chain = :c"), {"c": chain})
            conn.execute(text("DELETE FROM audit_checkpoints WHERE chain = :c"), {"c": chain})
        verdict = verify(runtime, chain, [cp])
        assert not verdict.ok and "unkeyed prefix" in verdict.reason


class TestCheckpointJob:
    def test_the_beat_signs_moved_heads_and_copies_them_out_of_the_database(self, runtime, settings, tmp_path):
        from hub.queue import AUDIT_CHECKPOINT

        schedule = runtime.celery.conf.beat_schedule.values()
        assert any(entry["task"] == AUDIT_CHECKPOINT and entry["schedule"] <= 60 for entry in schedule)
        runtime.settings = settings.model_copy(update={"audit_checkpoint_file": tmp_path / "cp" / "audit.jsonl"})
        a, b = str(create_tenant(runtime, "a")), str(create_tenant(runtime, "b"))
        record(runtime, a, 2)
        record(runtime, b, 1)
        runtime.celery.loader.import_default_modules()

        def run() -> int:
            # .result, not .get(): an embedded worker started earlier in this process
            # marks joins as blocking, and an eager result's get() then refuses
            result = runtime.celery.tasks[AUDIT_CHECKPOINT].apply()
            assert result.successful(), result.traceback
            return result.result

        assert run() == 2
        assert run() == 0  # nothing moved
        record(runtime, a, 1)
        assert run() == 1
        exported = read_checkpoint_file((tmp_path / "cp" / "audit.jsonl").read_text())
        assert [(cp.chain, cp.seq) for cp in exported] == sorted([(a, 2), (b, 1)]) + [(a, 3)]
        assert all(cp.public_key for cp in exported)

    def test_the_log_line_is_a_checkpoint_that_verifies(self, runtime):
        # (tests/conftest.py puts the logging configuration back after the test)
        stream = io.StringIO()
        configure_logging("INFO", stream=stream)
        chain = str(create_tenant(runtime))
        record(runtime, chain, 2)
        with runtime.session_factory() as s, s.begin():
            export(take_checkpoints(session=s), None)
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
        logged = [line["checkpoint"] for line in lines if line["event"] == "audit checkpoint"]
        [cp] = read_checkpoint_file("\n".join(logged))
        assert cp.seq == 2 and verify(runtime, chain, [cp]).ok

    def test_a_tampered_head_is_not_signed(self, runtime):
        chain = str(create_tenant(runtime))
        record(runtime, chain, 3)
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'x' WHERE chain = :c AND seq = 3"), {"c": chain})
        with runtime.session_factory() as s, s.begin():
            assert take_checkpoints(session=s) == []


class TestCommandLine:
    @pytest.fixture
    def env(self, settings, monkeypatch):
        monkeypatch.setenv("HUB_DATABASE_URL", settings.effective_database_url)
        monkeypatch.setenv("HUB_MASTER_KEYS", settings.master_keys.get_secret_value())
        monkeypatch.setenv("HUB_VAR_DIR", str(settings.var_dir))

    def test_checkpoint_then_verify_against_it_after_the_tail_is_cut(self, runtime, env, tmp_path):
        a, b = str(create_tenant(runtime, "a")), str(create_tenant(runtime, "b"))
        record(runtime, a, 4)
        record(runtime, b, 2)
        out = CliRunner().invoke(cli, ["audit", "checkpoint"])
        assert out.exit_code == 0, out.output
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert {(cp["chain"], cp["seq"]) for cp in lines} == {(a, 4), (b, 2)}
        assert all(cp["signature"] and cp["public_key"] for cp in lines)
        kept = tmp_path / "offsite.jsonl"
        kept.write_text(out.stdout)

        ok = CliRunner().invoke(cli, ["audit", "verify", "--checkpoint", str(kept)])
        assert ok.exit_code == 0 and "reaches checkpoint seq=4" in ok.output, ok.output
        one = CliRunner().invoke(cli, ["audit", "checkpoint", "--tenant", "b"])
        assert [json.loads(line)["chain"] for line in one.stdout.splitlines()] == [b]
        cut_tail(runtime, a, keep=2)
        with runtime.engine.begin() as conn:  # chain b removed whole
            conn.execute(text("DELETE FROM audit_events WHERE chain = :c"), {"c": b})
            conn.execute(text("DELETE FROM audit_chain_heads WHERE chain = :c"), {"c": b})
            conn.execute(text("DELETE FROM audit_checkpoints WHERE chain = :c"), {"c": b})
        assert CliRunner().invoke(cli, ["audit", "verify"]).exit_code == 0  # the database alone cannot tell
        broken = CliRunner().invoke(cli, ["audit", "verify", "--checkpoint", str(kept)])
        assert broken.exit_code == 1
        assert f"BROKEN  {a}  first broken row seq=3: rows after this one were removed" in broken.output
        assert f"BROKEN  {b}  first broken row seq=1" in broken.output
        only_a = CliRunner().invoke(cli, ["audit", "verify", "--tenant", "a", "--checkpoint", str(kept)])
        assert only_a.exit_code == 1 and b not in only_a.stdout and "seq=3" in only_a.stdout

    def test_a_checkpoint_file_that_does_not_parse_is_named(self, runtime, env, tmp_path):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"chain": "platform", "seq": 1}\nnot json\n')
        out = CliRunner().invoke(cli, ["audit", "verify", "--checkpoint", str(bad)])
        assert out.exit_code == 2 and "line 1: not a checkpoint" in out.output
        bad.write_text('[{"chain": "platform"}]')
        out = CliRunner().invoke(cli, ["audit", "verify", "--checkpoint", str(bad)])
        assert out.exit_code == 2 and "not a checkpoint" in out.output


class TestCheckpointRoute:
    def test_a_tenant_keeps_its_own_checkpoints_and_they_prove_a_cut_tail(self, client, runtime):
        tenant_id = create_tenant(runtime)
        token = bearer(get_token(client, create_client(runtime, tenant_id)))
        record(runtime, str(tenant_id), 3)
        r = client.get("/v1/audit/checkpoint", headers=token)
        assert r.status_code == 200, r.text
        saved = read_checkpoint_file(r.text)  # the body as it is, saved to a file
        assert saved[0].chain == str(tenant_id) and saved[0].seq >= 3 and saved[0].public_key
        with runtime.session_factory() as s:
            assert s.get(AuditCheckpoint, str(tenant_id)) is None  # signed on demand, not stored
        assert verify(runtime, str(tenant_id), saved).ok
        cut_tail(runtime, str(tenant_id), keep=saved[0].seq - 1)
        assert not verify(runtime, str(tenant_id), saved).ok

    def test_platform_admins_read_the_platforms_and_any_tenants(self, client, runtime):
        platform = bearer(get_token(client, create_client(runtime, None)))
        tenant_id = create_tenant(runtime)
        record(runtime, str(tenant_id), 1)
        assert client.get("/v1/audit/checkpoint", headers=platform).json()["chain"] == "platform"
        r = client.get(f"/v1/audit/checkpoint?tenant_id={tenant_id}", headers=platform)
        assert r.status_code == 200 and r.json()["chain"] == str(tenant_id)

    def test_a_tampered_head_is_not_signed(self, client, runtime):
        tenant_id = create_tenant(runtime)
        token = bearer(get_token(client, create_client(runtime, tenant_id)))
        client.get("/v1/audit", headers=token)  # audited: the chain has a row
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET outcome = 'failure' WHERE chain = :c"),
                         {"c": str(tenant_id)})
        r = client.get("/v1/audit/checkpoint", headers=token)
        assert r.status_code == 409 and r.json()["error"]["code"] == "audit_chain_broken"
