"""Seal and open throughput (MB/s) of the sealed-segment format, beside raw AES-256-GCM from
``cryptography`` in the same run, on typical segment sizes; then the cost of unwrapping a
data key through OpenBao Transit (a real ``bao`` dev server on loopback), and what the
worker's per-meeting data-key cache saves; then what the customer-verifiable records cost:
the keyed audit chain per key use (an entry MACed by the local keyring or by Transit, and
checked again by verify), a manifest record per segment, and each participant's own data
keys per meeting (made at first sight, unwrapped again for delivery).

    .venv/bin/python -m bench.seal [--seconds 1.0] [--unwraps 300] [--entries 300]

A 10 s utterance of 16 kHz mono s16 PCM is 320 KB; a transcript segment is ~1 KB.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys import segment
from keys.segment import SegmentContext, SegmentKind
from keys.types import DataKey

SIZES = {
    "transcript 1 KB": 1024,
    "utterance 3 s": 96_000,
    "utterance 10 s": 320_000,
    "long 30 s": 960_000,
}


def rate(fn: Callable[[], object], nbytes: int, seconds: float) -> float:
    fn()  # warm up
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n * nbytes / elapsed / 1e6


def transit_unwrap(n: int) -> dict[str, float]:
    """p50 / p95 of one unwrap through Transit, and per-segment key cost with the cache."""
    import statistics
    import tempfile
    from pathlib import Path

    from keys.transit import TransitConfig, TransitKeyProvider
    from keys.types import KeyContext, KeyUse, Purpose
    from tests.harness.bao import BaoServer
    from workers.keycache import DataKeyCache

    server = BaoServer(Path(tempfile.mkdtemp(prefix="bench-bao-")))
    try:
        provider = TransitKeyProvider(TransitConfig(url=server.url, token=server.token))
        provider.create("t_bench")
        ctx = KeyContext("t_bench", "m_bench", KeyUse.AUDIO)
        wrapped = provider.wrap("t_bench", DataKey.generate(), ctx, Purpose.TRANSCRIBE)
        provider.unwrap("t_bench", wrapped, ctx, Purpose.TRANSCRIBE)  # warm the connection
        times = []
        for _ in range(n):
            start = time.perf_counter()
            provider.unwrap("t_bench", wrapped, ctx, Purpose.TRANSCRIBE)
            times.append((time.perf_counter() - start) * 1000)
        cache = DataKeyCache(ttl=60)
        calls = 0

        def counted() -> DataKey:
            nonlocal calls
            calls += 1
            return provider.unwrap("t_bench", wrapped, ctx, Purpose.TRANSCRIBE)

        start = time.perf_counter()
        for _ in range(n):  # n segments of one meeting
            cache.get("t_bench", "m_bench", KeyUse.AUDIO, wrapped.to_str(), counted)
        cached_ms = (time.perf_counter() - start) * 1000 / n
    finally:
        server.stop()
    q = statistics.quantiles(times, n=20)
    return {
        "unwrap_p50_ms": statistics.median(times),
        "unwrap_p95_ms": q[18],
        "cached_per_segment_ms": cached_ms,
        "kms_calls_for_segments": calls,
        "segments": n,
    }


class _MemoryAudit:
    """An audit store in memory: the Redis append costs the same keyed or not."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.head: tuple[int, str | None] = (0, None)

    def audit_head(self, tenant_id: str) -> tuple[int, str | None]:
        return self.head

    def audit_append(self, tenant_id: str, entry: Any) -> bool:
        self.rows.append(entry.to_json())
        self.head = (entry.seq + 1, entry.hash)
        return True

    def audit_entries(self, tenant_id: str, start: int = 0, stop: int = -1) -> list[str]:
        return self.rows[start : None if stop == -1 else stop + 1]


def _per_call_ms(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) * 1000 / n


def records(n: int, transit_too: bool) -> dict[str, Any]:
    """Per key use: an audit entry unkeyed, MACed locally, MACed by Transit; per entry, the
    MAC check of verify; per segment, a manifest record; per participant and per meeting of
    four, their own keys (two wraps and two keyed entries) and their delivery (one unwrap
    per participant instead of one per meeting)."""
    import tempfile
    from pathlib import Path

    from keys.audit import AuditLog, mac_input
    from keys.local import LocalKeyring
    from keys.provider import KeyProvider
    from keys.types import KeyContext, KeyUse, Purpose
    from pipeline.manifest import manifest_key, sealed_record

    def entry_ms(authenticator: Any) -> float:
        log = AuditLog(_MemoryAudit(), authenticator=authenticator)
        return _per_call_ms(
            lambda: log.record("t_bench", "unwrap", actor="bench", meeting="m_bench"), n
        )

    def check_us(provider: Any) -> float:
        items = [(mac_input("t_bench", i, "0" * 64), "") for i in range(n)]
        items = [(data, provider.mac("t_bench", data)) for data, _ in items]
        start = time.perf_counter()
        assert all(provider.check_macs("t_bench", items))
        return (time.perf_counter() - start) * 1e6 / n

    def participant_ms(provider: KeyProvider) -> tuple[float, float]:
        log = AuditLog(_MemoryAudit(), authenticator=provider)
        made = []

        def one(p: str) -> None:
            for use in (KeyUse.AUDIO, KeyUse.TRANSCRIPT):
                ctx = KeyContext("t_bench", "m_bench", use, p)
                made.append(
                    (ctx, provider.wrap("t_bench", DataKey.generate(), ctx, Purpose.TRANSCRIBE))
                )
                log.record("t_bench", "wrap", actor="bench", meeting="m_bench", participant=p)

        counter = iter(range(10**9))
        create = _per_call_ms(lambda: one(f"p{next(counter)}"), max(n // 10, 5))
        transcripts = [(c, w) for c, w in made if c.use is KeyUse.TRANSCRIPT]
        deliver = _per_call_ms(
            lambda: provider.unwrap(
                "t_bench", transcripts[0][1], transcripts[0][0], Purpose.DELIVER
            ),
            max(n // 10, 5),
        )
        return create, deliver

    out: dict[str, Any] = {"entries": n}
    ring = LocalKeyring(Path(tempfile.mkdtemp(prefix="bench-ring-")) / "keys")
    ring.create("t_bench")
    out["entry_unkeyed_ms"] = entry_ms(None)
    out["entry_local_ms"] = entry_ms(ring)
    out["check_local_us"] = check_us(ring)
    out["participant_local_ms"], out["deliver_local_ms"] = participant_ms(ring)
    key = DataKey.generate()
    mkey = manifest_key(key, "t_bench", "m_bench", "p_bench")
    out["manifest_record_us"] = (
        _per_call_ms(lambda: sealed_record(mkey, 7, 123_456, 1_700_000_000), n) * 1000
    )
    out["manifest_key_us"] = (
        _per_call_ms(lambda: manifest_key(key, "t_bench", "m_bench", "p"), n) * 1000
    )
    if transit_too:
        from keys.transit import TransitConfig, TransitKeyProvider
        from tests.harness.bao import BaoServer

        server = BaoServer(Path(tempfile.mkdtemp(prefix="bench-bao-")))
        try:
            transit = TransitKeyProvider(TransitConfig(url=server.url, token=server.token))
            transit.create("t_bench")
            out["entry_transit_ms"] = entry_ms(transit)
            out["check_transit_us"] = check_us(transit)
            out["participant_transit_ms"], out["deliver_transit_ms"] = participant_ms(transit)
        finally:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument(
        "--unwraps", type=int, default=300, help="unwraps through Transit to time (0 to skip)"
    )
    parser.add_argument(
        "--entries", type=int, default=300, help="audit entries per record cost (0 to skip)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    key = DataKey.generate()
    ctx = SegmentContext("t_bench", "m_bench", "p_bench", 1, SegmentKind.AUDIO)
    gcm = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    rows: list[dict[str, Any]] = []
    for label, size in SIZES.items():
        data = os.urandom(size)
        sealed = segment.seal(key, ctx, data)
        raw = gcm.encrypt(nonce, data, None)
        cases: dict[str, Callable[[], object]] = {
            "seal_MBps": functools.partial(segment.seal, key, ctx, data),
            "open_MBps": functools.partial(segment.open, key, ctx, sealed),
            "aesgcm_encrypt_MBps": functools.partial(gcm.encrypt, nonce, data, None),
            "aesgcm_decrypt_MBps": functools.partial(gcm.decrypt, nonce, raw, None),
        }
        row: dict[str, Any] = {"payload": label, "bytes": size}
        row.update({name: rate(fn, size, args.seconds) for name, fn in cases.items()})
        rows.append(row)
    transit = transit_unwrap(args.unwraps) if args.unwraps else None
    kept = records(args.entries, transit_too=bool(args.unwraps)) if args.entries else None
    if args.json:
        print(
            json.dumps(
                {
                    "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "rows": rows,
                    "transit": transit,
                    "records": kept,
                },
                indent=2,
            )
        )
        return
    print(
        f"{'payload':<16} {'seal':>9} {'open':>9} {'AES-GCM enc':>12} {'AES-GCM dec':>12}   (MB/s)"
    )
    for r in rows:
        print(
            f"{r['payload']:<16} {r['seal_MBps']:>9.0f} {r['open_MBps']:>9.0f} "
            f"{r['aesgcm_encrypt_MBps']:>12.0f} {r['aesgcm_decrypt_MBps']:>12.0f}"
        )
    ten = next(r for r in rows if r["payload"] == "utterance 10 s")
    audio_mbps = 16000 * 2 / 1e6
    print(
        f"\nOne core seals {ten['seal_MBps'] / audio_mbps:,.0f}x real time of 16 kHz audio "
        f"({ten['seal_MBps'] / ten['aesgcm_encrypt_MBps']:.0%} of raw AES-GCM speed)."
    )
    if transit:
        print(
            f"\nUnwrap through OpenBao Transit (loopback, {transit['segments']} calls): "
            f"p50 {transit['unwrap_p50_ms']:.2f} ms, p95 {transit['unwrap_p95_ms']:.2f} ms"
        )
        print(
            f"With the worker's data-key cache, {transit['segments']} segments of one "
            f"meeting made {transit['kms_calls_for_segments']} KMS call(s): "
            f"{transit['cached_per_segment_ms']:.3f} ms of key cost per segment"
        )
    if kept:
        _print_records(kept)


def _print_records(r: dict[str, Any]) -> None:
    print(f"\nCustomer-verifiable records ({r['entries']} entries per figure):")
    print(f"{'':<34} {'local':>10} {'Transit':>10}")
    transit = "entry_transit_ms" in r

    def row(label: str, local: float, remote: float | None, unit: str) -> None:
        other = f"{remote:>10.3f}" if remote is not None else f"{'-':>10}"
        print(f"{label:<34} {local:>10.3f} {other}   {unit}")

    row("audit entry, unkeyed", r["entry_unkeyed_ms"], None, "ms per key use")
    row(
        "audit entry, keyed (MAC)", r["entry_local_ms"], r.get("entry_transit_ms"), "ms per key use"
    )
    row(
        "verify: MAC check per entry",
        r["check_local_us"],
        r.get("check_transit_us"),
        "µs (batched)",
    )
    row(
        "participant's keys (2 wraps+2 MACs)",
        r["participant_local_ms"],
        r.get("participant_transit_ms"),
        "ms per participant",
    )
    row(
        "delivery: one unwrap",
        r["deliver_local_ms"],
        r.get("deliver_transit_ms"),
        "ms per participant",
    )
    extra = 4 * r["participant_local_ms"]
    extra_t = 4 * r["participant_transit_ms"] if transit else None
    row("4-person meeting: own keys", extra, extra_t, "ms per meeting")
    print(
        f"manifest record {r['manifest_record_us']:.1f} µs per segment; its key (HKDF) "
        f"{r['manifest_key_us']:.1f} µs once per participant"
    )


if __name__ == "__main__":
    main()
