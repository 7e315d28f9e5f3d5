"""The audit hash chain against an in-memory store (the Redis store is tested in
integration): each kind of tampering is detected and named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from keys.audit import AuditEntry, AuditHead, AuditLog, VerifyReport, genesis_hash, verify
from keys.errors import InvalidKeyInput
from keys.local import LocalKeyring


class MemoryAuditStore:
    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}
        self.heads: dict[str, tuple[int, str | None]] = {}

    def audit_head(self, tenant_id: str) -> tuple[int, str | None]:
        return self.heads.get(tenant_id, (0, None))

    def audit_append(self, tenant_id: str, entry: AuditEntry) -> bool:
        if self.audit_head(tenant_id)[0] != entry.seq:
            return False
        self.rows.setdefault(tenant_id, []).append(entry.to_json())
        self.heads[tenant_id] = (entry.seq + 1, entry.hash)
        return True

    def audit_entries(self, tenant_id: str, start: int = 0, stop: int = -1) -> list[str]:
        rows = self.rows.get(tenant_id, [])
        return rows[start : None if stop == -1 else stop + 1]


def make_log(n: int = 5) -> tuple[MemoryAuditStore, AuditLog]:
    store = MemoryAuditStore()
    log = AuditLog(store, clock=lambda: 1_700_000_000.0)
    for i in range(n):
        log.record(
            "t", "unwrap", actor="worker", meeting=f"m{i}", purpose="transcribe", key_version=1
        )
    return store, log


def check(store: MemoryAuditStore) -> tuple[str, ...]:
    return verify("t", store.rows["t"], store.heads["t"]).problems


def test_intact_chain_verifies() -> None:
    store, log = make_log()
    assert check(store) == ()
    assert [e.seq for e in log.entries("t")] == [0, 1, 2, 3, 4]
    assert log.entries("t")[1].prev == log.entries("t")[0].hash


def test_edit_is_named() -> None:
    store, _ = make_log()
    doc = json.loads(store.rows["t"][2])
    doc["purpose"] = "deliver"
    store.rows["t"][2] = json.dumps(doc)
    assert check(store) == ("entry 2 was edited",)


def test_edit_with_recomputed_hash_is_named() -> None:
    store, _ = make_log()
    entry = AuditEntry.from_json(store.rows["t"][2])
    forged = AuditEntry(**{**json.loads(entry.to_json()), "purpose": "deliver"})
    forged = AuditEntry(**{**json.loads(forged.to_json()), "hash": forged.compute_hash()})
    store.rows["t"][2] = forged.to_json()
    problems = check(store)
    assert problems == (
        "entry 3 does not follow entry 2: an entry before it was edited or replaced",
    )


def test_insertion_is_named() -> None:
    store, _ = make_log()
    store.rows["t"].insert(3, store.rows["t"][1])
    assert "entry 1 at position 3 was inserted (expected entry 3)" in check(store)


def test_deletion_is_named() -> None:
    store, _ = make_log()
    del store.rows["t"][2]
    assert check(store) == ("entry 2 deleted",)


def test_deletion_at_end_is_named() -> None:
    store, _ = make_log()
    del store.rows["t"][-2:]
    assert check(store) == ("the last 2 entries (from entry 3) were deleted",)


def test_concurrent_writer_is_retried() -> None:
    store, log = make_log(1)
    real_append = store.audit_append
    calls = {"n": 0}

    def racing_append(tenant_id: str, entry: AuditEntry) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:  # another process appends first
            other = AuditLog(store, clock=lambda: 1.0)
            store.audit_append = real_append  # type: ignore[method-assign]
            other.record("t", "rotate", actor="cli")
        return real_append(tenant_id, entry)

    store.audit_append = racing_append  # type: ignore[method-assign]
    entry = log.record("t", "revoke", actor="cli")
    assert entry.seq == 2
    assert check(store) == ()


# -- the keyed chain: MACs by a real LocalKeyring, heads the customer keeps ---------------


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[MemoryAuditStore, AuditLog, LocalKeyring]:
    ring = LocalKeyring(tmp_path / "keys")
    ring.create("t")
    store = MemoryAuditStore()
    log = AuditLog(store, clock=lambda: 1_700_000_000.0, authenticator=ring)
    for i in range(6):
        log.record("t", "unwrap", actor="worker", meeting=f"m{i}", purpose="transcribe")
    return store, log, ring


def keyed_check(
    store: MemoryAuditStore, ring: LocalKeyring, since: AuditHead | None = None
) -> VerifyReport:
    return verify("t", store.rows["t"], store.heads["t"], ring, since)


def rewrite(store: MemoryAuditStore, at: int, keep_macs: bool) -> None:
    """What an operator with Redis access can do: edit entry ``at`` and recompute every
    hash after it (and the stored head), keeping or dropping the MACs."""
    prev = AuditEntry.from_json(store.rows["t"][at - 1]).hash if at else genesis_hash("t")
    for pos in range(at, len(store.rows["t"])):
        doc = json.loads(store.rows["t"][pos])
        if pos == at:
            doc["actor"] = "someone-else"
        doc["prev"] = prev
        if not keep_macs:
            doc.pop("mac", None)
        entry = AuditEntry(**doc)
        entry = AuditEntry(**{**doc, "hash": entry.compute_hash()})
        store.rows["t"][pos] = entry.to_json()
        prev = entry.hash
    store.heads["t"] = (len(store.rows["t"]), prev)


def test_a_keyed_chain_verifies_with_every_mac_checked(keyed: Any) -> None:
    store, log, ring = keyed
    assert all(e.mac.startswith("local:v1:") for e in log.entries("t"))
    report = keyed_check(store, ring)
    assert report.ok and report.authenticated == 6 and report.problems == ()


def test_a_full_rewrite_with_recomputed_hashes_is_named(keyed: Any) -> None:
    store, _, ring = keyed
    rewrite(store, 2, keep_macs=True)
    assert verify("t", store.rows["t"], store.heads["t"]).ok, "the unkeyed check passes"
    problems = keyed_check(store, ring).problems
    assert problems == tuple(
        f"entry {n} has a MAC that is not the tenant key's (rewritten)" for n in range(2, 6)
    )


def test_a_rewrite_that_strips_the_macs_is_named(keyed: Any) -> None:
    store, _, ring = keyed
    rewrite(store, 3, keep_macs=False)
    assert keyed_check(store, ring).problems == tuple(
        f"entry {n} carries no MAC (rewritten, or written while the key provider could not "
        "make one)"
        for n in range(3, 6)
    )
    rewrite(store, 0, keep_macs=False)
    assert keyed_check(store, ring).problems == (
        "no entry carries a MAC: the chain is from before keyed audit (run 'sealscribe audit "
        "migrate') or its MACs were stripped",
    )


def test_a_truncation_verifies_alone_and_is_named_against_a_saved_head(keyed: Any) -> None:
    store, log, ring = keyed
    head = log.head("t")
    assert head is not None and (head.count, head.seq) == (6, 5)
    saved = AuditHead.from_json(head.to_json())
    assert saved == head
    assert keyed_check(store, ring, saved).ok
    log.record("t", "rotate", actor="cli")
    assert keyed_check(store, ring, saved).ok, "a longer chain extends the head"
    del store.rows["t"][4:]
    store.heads["t"] = (4, AuditEntry.from_json(store.rows["t"][-1]).hash)
    assert keyed_check(store, ring).ok, "a prefix of a keyed chain is a keyed chain"
    problems = keyed_check(store, ring, saved).problems
    assert len(problems) == 1 and problems[0].startswith(
        "truncated: the chain has 4 entries, but the saved head is entry 5"
    )


def test_a_rewrite_before_a_saved_head_and_a_forged_head_are_named(keyed: Any) -> None:
    store, log, ring = keyed
    saved = log.head("t")
    assert saved is not None
    rewrite(store, 5, keep_macs=True)
    assert any(p.startswith("rewritten: entry 5") for p in keyed_check(store, ring, saved).problems)
    forged = dataclasses.replace(saved, hash="0" * 64)
    problems = keyed_check(store, ring, forged).problems
    assert "the saved head's MAC is not the tenant key's: the head file was altered" in problems


def test_a_legacy_chain_is_keyed_by_its_next_entry(tmp_path: Path) -> None:
    store, legacy = make_log(3)
    ring = LocalKeyring(tmp_path / "keys")
    ring.create("t")
    assert keyed_check(store, ring).problems[0].startswith("no entry carries a MAC")
    AuditLog(store, authenticator=ring).record("t", "audit-keyed", actor="cli")
    report = keyed_check(store, ring)
    assert report.ok and report.authenticated == 4
    assert report.notes == (
        "3 entries from before keyed audit are covered by the MAC of entry 3 and those after it",
    )
    # entries written before keyed audit keep their hashes (the new fields hash as absent)
    assert [e.hash for e in legacy.entries("t")[:3]] == [
        AuditEntry.from_json(raw).compute_hash() for raw in store.rows["t"][:3]
    ]


def test_an_unreadable_head_file_is_refused() -> None:
    with pytest.raises(InvalidKeyInput):
        AuditHead.from_json(b"{not json")
    with pytest.raises(InvalidKeyInput):
        AuditHead.from_json(
            json.dumps({"tenant": "t", "count": 0, "hash": "", "mac": "", "at": 0, "taken": 0})
        )


def test_a_quick_check_of_the_newest_macs_gives_the_same_verdict(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keys")
    ring.create("t")
    store = MemoryAuditStore()
    log = AuditLog(store, authenticator=ring)
    for i in range(10):
        log.record("t", "unwrap", actor="worker", meeting=f"m{i}")
    calls: list[int] = []
    real = ring.check_macs

    def counted(tenant_id: str, items: Any) -> list[bool | None]:
        calls.append(len(items))
        return real(tenant_id, items)

    ring.check_macs = counted  # type: ignore[method-assign]
    quick = verify("t", store.rows["t"], store.heads["t"], ring, newest=3)
    assert quick.ok and quick.authenticated == 10 and calls == [3]
    rewrite(store, 2, keep_macs=True)
    calls.clear()
    quick = verify("t", store.rows["t"], store.heads["t"], ring, newest=3)
    assert calls == [3, 10], "none of the newest checks: every MAC is checked, to name them"
    assert not quick.ok and quick.problems == keyed_check(store, ring).problems
