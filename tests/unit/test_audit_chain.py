"""The audit hash chain against an in-memory store (the Redis store is tested in
integration): each kind of tampering is detected and named."""

from __future__ import annotations

import json

from keys.audit import AuditEntry, AuditLog, verify


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
